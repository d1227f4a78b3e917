"""DoRA layers written as the solutions notebook's cells, and a notebook of them, for the benchmark's tests."""

from __future__ import annotations

import nbformat

IN, OUT, TOKENS = 12, 20, 6  # non-square: weight (OUT, IN)

# A correct DoRA layer written as PEFT's formula, in the cell layout of the solutions notebook.
DORA_CELL = """\
class DoRALinear(nn.Module):
    def __init__(self, base_layer, r=8, lora_alpha=16.0, lora_dropout=0.0):
        super().__init__()
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.r = r
        ### BEGIN SOLUTION
        self.scaling = lora_alpha / r
        self.weight = nn.Parameter(base_layer.weight.detach(), requires_grad=False)
        self.bias = None if base_layer.bias is None else nn.Parameter(base_layer.bias.detach(), requires_grad=False)
        self.magnitude = nn.Parameter(torch.linalg.vector_norm(self.weight, dim=1, keepdim=True))
        self.lora_A = nn.Parameter(torch.randn(r, self.in_features) / 10)
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, r))
        self.lora_dropout = nn.Dropout(lora_dropout) if lora_dropout > 0 else nn.Identity()
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        V = self.weight + self.scaling * self.lora_B @ self.lora_A
        return F.linear(x, self.magnitude * V / torch.linalg.vector_norm(V, dim=1, keepdim=True).detach(), self.bias)
        ### END SOLUTION
"""

# A later cell that builds on the class above, as the bonus's EfficientDoRALinear does.
EFFICIENT_CELL = """\
class EfficientDoRALinear(DoRALinear):
    def forward(self, x):
        ### BEGIN SOLUTION
        return super().forward(x)
        ### END SOLUTION
"""

RELEASED_CELL = """\
class DoRALinear(nn.Module):
    def __init__(self, base_layer, r=8, lora_alpha=16.0, lora_dropout=0.0):
        super().__init__()
        # YOUR CODE HERE
        raise NotImplementedError()
"""

LAB_CLASSES = ["DoRALinear", "EfficientDoRALinear"]


def write_notebook(path, *class_cells: str):
    """Write a notebook shaped like the lab's: a markdown cell, a setup cell that must not run, the class cells."""
    cells = [
        nbformat.v4.new_markdown_cell("## Exercise 2: Full DoRA Layer Implementation"),
        nbformat.v4.new_code_cell("raise RuntimeError('the setup cell must not run when loading a class')"),
    ]
    cells += [nbformat.v4.new_code_cell(cell) for cell in class_cells]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    return path
