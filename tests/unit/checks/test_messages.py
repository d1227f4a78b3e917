"""The check messages, as a table: typical wrong answers to every exercise and the message each gets.

Every message leads with the diagnosis in words (the phrases below, before any expected/got), gives the evidence
after it and the tolerance last, and never hands over a line of a model answer: no statement of the solutions
notebook's answers and nothing shaped like code to paste (tests/unit/checks/__init__.py, `leaks`). The answers are
written as students write them.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import labhelpers.checks
from labhelpers.checks import (
    check_decompose_weight,
    check_dora_direction_gradient,
    check_dora_linear,
    check_evaluate_accuracy,
    check_magnitude_direction_change,
    check_train_one_epoch,
)
from labhelpers.checks.core import CheckFailed, student_error
from labhelpers.checks.messages import Lesson, verdict
from labhelpers.probes.core import Observation, StudentError
from tests.unit.checks import code_shapes_in, leaks, model_answer_statements, normalised, statements_of

# ------------------------------------------------------------------------------------------------
# Exercise 1: decompose_weight


def decompose_over_columns(W):
    magnitude = W.norm(dim=0, keepdim=True)
    return magnitude, W / magnitude


def decompose_without_keepdim(W):
    magnitude = W.norm(dim=1)
    return magnitude, W / magnitude[:, None]


def decompose_with_epsilon(W):
    magnitude = W.norm(dim=1, keepdim=True) + 1e-6
    return magnitude, W / magnitude


def decompose_without_zero_guard(W):
    magnitude = W.norm(dim=1, keepdim=True)
    return magnitude, W / magnitude


def decompose_without_return(W):
    magnitude = W.norm(dim=1, keepdim=True)
    direction = W / magnitude.clamp_min(1e-12)  # noqa: F841 (the forgotten return is the mistake)


# ------------------------------------------------------------------------------------------------
# Exercise 2: DoRALinear


class StudentDoRALinear(nn.Module):
    """A right answer as a student writes it; the wrong ones below each change one habit."""

    def __init__(self, base_layer, r=8, lora_alpha=16.0, lora_dropout=0.0):
        super().__init__()
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.r = r
        W = base_layer.weight.detach()
        self.scaling = lora_alpha / r
        self.weight = nn.Parameter(W.clone(), requires_grad=False)
        self.bias = None if base_layer.bias is None else nn.Parameter(base_layer.bias.detach(), requires_grad=False)
        self.magnitude = nn.Parameter(W.norm(dim=1, keepdim=True))
        self.lora_A = nn.Parameter(torch.randn(r, self.in_features, dtype=W.dtype) / math.sqrt(self.in_features))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, r, dtype=W.dtype))
        self.lora_dropout = self.make_dropout(lora_dropout)

    def make_dropout(self, p):
        return nn.Dropout(p) if p > 0 else nn.Identity()

    def norm_factor(self):
        """m / ||V||, (out, 1)."""
        V = self.weight + self.scaling * self.lora_B @ self.lora_A
        return self.magnitude / V.norm(dim=1, keepdim=True).detach()

    def forward(self, x):
        factor = self.norm_factor().T
        x_d = self.lora_dropout(x)
        out = F.linear(x, self.weight, self.bias) + (factor - 1) * (x_d @ self.weight.T)
        return out + factor * self.scaling * (x_d @ self.lora_A.T @ self.lora_B.T)


class DoRALinearInitPass(nn.Module):
    """The release's __init__ with `pass` where the answer goes."""

    def __init__(self, base_layer, r=8, lora_alpha=16.0, lora_dropout=0.0):
        super().__init__()
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.r = r
        pass

    def forward(self, x):
        raise NotImplementedError()


class DoRALinearDefaultDtype(StudentDoRALinear):
    """Creates lora_A and lora_B without a dtype: float32, while the check's base layer is float64."""

    def __init__(self, base_layer, r=8, lora_alpha=16.0, lora_dropout=0.0):
        super().__init__(base_layer, r, lora_alpha, lora_dropout)
        self.lora_A = nn.Parameter(torch.randn(r, self.in_features) / math.sqrt(self.in_features))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, r))


class DoRALinearDropoutFloat(StudentDoRALinear):
    """Stores the constructor's probability as self.lora_dropout."""

    def make_dropout(self, p):
        return p


class DoRALinearFactorAsColumn(StudentDoRALinear):
    """Multiplies the (..., out) output by m/||V|| of shape (out, 1), as it comes."""

    def forward(self, x):
        factor = self.norm_factor()
        x_d = self.lora_dropout(x)
        out = F.linear(x, self.weight, self.bias) + (factor - 1) * (x_d @ self.weight.T)
        return out + factor * self.scaling * (x_d @ self.lora_A.T @ self.lora_B.T)


class DoRALinearUnscaled(StudentDoRALinear):
    """Forgets the scaling: V = W0 + B·A, and the adapter term without s."""

    def forward(self, x):
        V = self.weight + self.lora_B @ self.lora_A
        factor = (self.magnitude / V.norm(dim=1, keepdim=True).detach()).T
        x_d = self.lora_dropout(x)
        out = F.linear(x, self.weight, self.bias) + (factor - 1) * (x_d @ self.weight.T)
        return out + factor * (x_d @ self.lora_A.T @ self.lora_B.T)


class DoRALinearNormOfW(StudentDoRALinear):
    """Divides by the norm of the frozen W0, never of V."""

    def norm_factor(self):
        return self.magnitude / self.weight.norm(dim=1, keepdim=True)


class DoRALinearZeroInit(StudentDoRALinear):
    """Starts both lora_A and lora_B at zero."""

    def __init__(self, base_layer, r=8, lora_alpha=16.0, lora_dropout=0.0):
        super().__init__(base_layer, r, lora_alpha, lora_dropout)
        self.lora_A = nn.Parameter(torch.zeros_like(self.lora_A))


class DoRALinearNormAttached(StudentDoRALinear):
    """Leaves ||V|| in autograd's graph."""

    def norm_factor(self):
        V = self.weight + self.scaling * self.lora_B @ self.lora_A
        return self.magnitude / V.norm(dim=1, keepdim=True)


class DoRALinearTrainableBase(StudentDoRALinear):
    """Wraps the base weight in a parameter that trains."""

    def __init__(self, base_layer, r=8, lora_alpha=16.0, lora_dropout=0.0):
        super().__init__(base_layer, r, lora_alpha, lora_dropout)
        self.weight = nn.Parameter(base_layer.weight.detach().clone())


class DoRALinearDropoutEverywhere(StudentDoRALinear):
    """Drops out the input of the frozen path too: x_d (m·V/||V||)ᵀ + b."""

    def forward(self, x):
        V = self.weight + self.scaling * self.lora_B @ self.lora_A
        return F.linear(self.lora_dropout(x), self.norm_factor() * V, self.bias)


class DoRALinearBiasLost(StudentDoRALinear):
    """Keeps no bias."""

    def __init__(self, base_layer, r=8, lora_alpha=16.0, lora_dropout=0.0):
        super().__init__(base_layer, r, lora_alpha, lora_dropout)
        self.bias = None


# ------------------------------------------------------------------------------------------------
# Exercise 3: dora_direction_gradient


def gradient_never_projected(grad_weight, weight, magnitude, detach_norm=True):
    return magnitude / weight.norm(dim=1, keepdim=True) * grad_weight


def gradient_without_factor(grad_weight, weight, magnitude, detach_norm=True):
    if detach_norm:
        return grad_weight
    v = weight / weight.norm(dim=1, keepdim=True)
    return grad_weight - (grad_weight * v).sum(dim=1, keepdim=True) * v


# ------------------------------------------------------------------------------------------------
# Exercise 4: train_one_epoch, evaluate_accuracy


def train_without_clearing_gradients(model, loader, optimizer):
    model.train()
    losses = []
    for batch in loader:
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return sum(losses) / len(losses)


def train_without_train_mode(model, loader, optimizer):
    losses = []
    for batch in loader:
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return sum(losses) / len(losses)


def train_returning_last_loss(model, loader, optimizer):
    model.train()
    for batch in loader:
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return loss.item()


def evaluate_in_training_mode(model, loader):
    correct = total = 0
    with torch.no_grad():
        for batch in loader:
            correct += (model(**batch).logits.argmax(-1) == batch["labels"]).sum().item()
            total += len(batch["labels"])
    return correct / total


def evaluate_per_batch(model, loader):
    model.eval()
    correct = 0
    with torch.no_grad():
        for batch in loader:
            correct += (model(**batch).logits.argmax(-1) == batch["labels"]).sum().item()
    return correct / len(loader)


# ------------------------------------------------------------------------------------------------
# Exercise 5: magnitude_direction_change


def change_over_columns(W0, W):
    delta_m = (W.norm(dim=1) - W0.norm(dim=1)).abs().mean()
    delta_d = (1 - F.cosine_similarity(W, W0, dim=0)).mean()
    return delta_m.item(), delta_d.item()


def change_as_tensors(W0, W):
    delta_m = (W.norm(dim=1) - W0.norm(dim=1)).abs().mean()
    delta_d = (1 - F.cosine_similarity(W, W0, dim=1)).mean()
    return delta_m, delta_d


def change_signed(W0, W):
    delta_m = (W.norm(dim=1) - W0.norm(dim=1)).mean()
    delta_d = (1 - F.cosine_similarity(W, W0, dim=1)).mean()
    return delta_m.item(), delta_d.item()


# ------------------------------------------------------------------------------------------------
# The table


@dataclass(frozen=True)
class WrongAnswer:
    """A typical wrong answer and what its message must say.

    Attributes:
        name: a readable identifier.
        check: the notebook's check the answer goes to.
        answer: the student's function or class.
        phrases: the diagnosis: phrases the message must contain, in this order, before any expected/got.
    """

    name: str
    check: Callable
    answer: Callable
    phrases: tuple[str, ...]


WRONG_ANSWERS = (
    WrongAnswer("decompose: norm over dim=0", check_decompose_weight, decompose_over_columns,
                ("you took the norm over dim=0", "one magnitude per output feature", "which axis")),
    WrongAnswer("decompose: reduced axis dropped", check_decompose_weight, decompose_without_keepdim,
                ("the magnitude lost its reduced axis", "broadcast")),
    WrongAnswer("decompose: epsilon added to the magnitude", check_decompose_weight, decompose_with_epsilon,
                ("you added an epsilon to the magnitude", "denominator, not the magnitude")),
    WrongAnswer("decompose: zero row divided by 0", check_decompose_weight, decompose_without_zero_guard,
                ("division by zero", "an all-zero row has norm 0 and no direction")),
    WrongAnswer("decompose: no return", check_decompose_weight, decompose_without_return,
                ("returned None", "did you forget to return")),
    WrongAnswer("DoRALinear: `pass` in __init__", check_dora_linear, DoRALinearInitPass,
                ("__init__ did not create", "Exercise 2's contract", "the pretrained weight W0",
                 "one trainable magnitude per output feature", "random at the start", "zero at the start",
                 "the dropout module")),
    WrongAnswer("DoRALinear: parameters in the default dtype", check_dora_linear, DoRALinearDefaultDtype,
                ("the base layer's dtype and device", "float64", "float32 on the CPU unless")),
    WrongAnswer("DoRALinear: lora_dropout kept as the float", check_dora_linear, DoRALinearDropoutFloat,
                ("lora_dropout is a float, not a module", "the constructor's lora_dropout is a probability",
                 "calls once on the adapter's input")),
    WrongAnswer("DoRALinear: m/||V|| of shape (out, 1) times (..., out)", check_dora_linear, DoRALinearFactorAsColumn,
                ("raised RuntimeError", "m/‖V‖ has shape (out_features, 1)", "last axis")),
    WrongAnswer("DoRALinear: B·A not scaled", check_dora_linear, DoRALinearUnscaled,
                ("the LoRA update is not scaled", "V = W0 + s·B·A", "s = lora_alpha / r")),
    WrongAnswer("DoRALinear: norm of the frozen W0", check_dora_linear, DoRALinearNormOfW,
                ("the norm is of the frozen W alone", "adapted weight V = W0 + s·B·A")),
    WrongAnswer("DoRALinear: lora_A and lora_B both zero", check_dora_linear, DoRALinearZeroInit,
                ("lora_A is all zeros at the start", "neither ever gets a gradient", "LoRA paper")),
    WrongAnswer("DoRALinear: norm not detached", check_dora_linear, DoRALinearNormAttached,
                ("the gradient matches DoRA without a detached norm", "§4.3")),
    WrongAnswer("DoRALinear: base weight trainable", check_dora_linear, DoRALinearTrainableBase,
                ("the base weight is trainable", "DoRA freezes W0")),
    WrongAnswer("DoRALinear: dropout on the frozen path", check_dora_linear, DoRALinearDropoutEverywhere,
                ("dropout is applied to the frozen base path too", "only the adapter path")),
    WrongAnswer("DoRALinear: bias lost", check_dora_linear, DoRALinearBiasLost,
                ("the base bias is lost", "part of the pretrained layer")),
    WrongAnswer("direction gradient: never projected", check_dora_direction_gradient, gradient_never_projected,
                ("with detach_norm=False the norm also gets a gradient", "§4.2")),
    WrongAnswer("direction gradient: factor m/||V|| missing", check_dora_direction_gradient, gradient_without_factor,
                ("the factor m/‖V‖ is missing", "chain rule")),
    WrongAnswer("train_one_epoch: gradients never cleared", check_train_one_epoch, train_without_clearing_gradients,
                ("gradients were never cleared", "adds to")),
    WrongAnswer("train_one_epoch: no training mode", check_train_one_epoch, train_without_train_mode,
                ("ran the model in evaluation mode", "training mode at the start of the epoch")),
    WrongAnswer("train_one_epoch: last batch's loss", check_train_one_epoch, train_returning_last_loss,
                ("the loss of the last batch", "mean over every batch")),
    WrongAnswer("evaluate_accuracy: training mode", check_evaluate_accuracy, evaluate_in_training_mode,
                ("ran the model in training mode", "dropout", "evaluation mode")),
    WrongAnswer("evaluate_accuracy: divided by batches", check_evaluate_accuracy, evaluate_per_batch,
                ("divided by the number of batches", "number of examples")),
    WrongAnswer("magnitude_direction_change: cosines of columns", check_magnitude_direction_change,
                change_over_columns, ("cosines between columns (dim=0)", "each row")),
    WrongAnswer("magnitude_direction_change: tensors returned", check_magnitude_direction_change, change_as_tensors,
                ("should be one Python float", "Tensor.item")),
    WrongAnswer("magnitude_direction_change: signed ΔM", check_magnitude_direction_change, change_signed,
                ("signed differences", "absolute value of each row's change")),
)  # fmt: skip


# ------------------------------------------------------------------------------------------------
# How a message is put together


@pytest.mark.parametrize(
    "parts, message",
    [
        (("the norm is over dim=0", "expected (7, 1), got (1, 5)", ""), "The norm is over dim=0. Expected (7, 1), got (1, 5)."),
        (("lora_A is zero", "", ""), "lora_A is zero."),
        (("what is wrong?", "expected 1, got 2", "Tolerance: relative 1e-06"), "What is wrong? Expected 1, got 2. Tolerance: relative 1e-06."),
        (("(see §4.3.)", "", ""), "(see §4.3.)"),
    ],
    ids=["three-parts", "identifier-kept-lowercase", "question", "parenthesis"],
)  # fmt: skip
def test_verdict_puts_the_diagnosis_first_and_finishes_each_sentence(parts, message):
    assert verdict(*parts) == message


def _raised(error: BaseException, what: str = "f(x)") -> Observation:
    obs = Observation()
    obs.error("error", StudentError(what, error))
    return obs


@pytest.mark.parametrize(
    "error, lesson",
    [
        (RuntimeError("expected m1 and m2 to have the same dtype, but got: float != double"), "Tensors of two dtypes met in one operation"),
        (RuntimeError("self and mat2 must have the same dtype, but got Double and Float"), "The checks run in float64 as well as float32"),
        (RuntimeError("Expected all tensors to be on the same device, but found at least two devices"), "Tensors on two devices"),
        (RuntimeError("mat1 and mat2 shapes cannot be multiplied (8x10 and 4x10)"), "A matrix product got factors whose inner sizes differ"),
        (ValueError("shapes do not match"), ""),
    ],
    ids=["dtype", "dtype-addmm", "device", "matmul", "unknown"],
)  # fmt: skip
def test_a_known_exception_gets_its_lesson_between_the_error_and_the_fix(error, lesson):
    with pytest.raises(CheckFailed) as info:
        student_error(_raised(error), "error")
    message = str(info.value)
    assert message.startswith(f"f(x) raised {type(error).__name__}: {error}")
    assert message.endswith(
        "Fix the error in your code (the traceback above shows the line), then run the check again."
    )
    assert (lesson in message) if lesson else message.count(".") == 2


def test_a_checks_own_lesson_comes_first_and_may_ask_for_the_call():
    own = Lesson(r"same dtype", "Build the parameters in the base layer's dtype.", where="forward")
    with pytest.raises(
        CheckFailed, match="dtype, but got: a != b. Build the parameters in the base layer's dtype. Fix"
    ):
        student_error(_raised(RuntimeError("same dtype, but got: a != b"), "the forward of L"), "error", lessons=[own])
    with pytest.raises(CheckFailed, match="Tensors of two dtypes"):
        student_error(_raised(RuntimeError("same dtype, but got: a != b"), "L()"), "error", lessons=[own])


# ------------------------------------------------------------------------------------------------
# The table's messages


def message_of(wrong: WrongAnswer) -> str:
    """Run the wrong answer's check; return the message of the AssertionError it raises."""
    with pytest.raises(AssertionError) as info:
        wrong.check(wrong.answer)
    return str(info.value)


EVIDENCE = re.compile(r"\b(expected|got)\b", re.IGNORECASE)


@pytest.mark.parametrize("wrong", WRONG_ANSWERS, ids=[wrong.name for wrong in WRONG_ANSWERS])
def test_each_wrong_answer_gets_its_diagnosis_first_then_evidence_then_tolerance(wrong):
    message = message_of(wrong)
    evidence = EVIDENCE.search(message)
    end_of_diagnosis = evidence.start() if evidence else len(message)
    position = 0
    for text in wrong.phrases:
        found = message.lower().find(text.lower(), position)
        assert 0 <= found < end_of_diagnosis, (text, message)
        position = found + len(text)
    if "Tolerance:" in message:
        last = message[message.index("Tolerance:") :]
        assert not re.search(r"[.?!] \S", last), message  # the tolerance is the last sentence
    assert leaks(message) == [], message


def test_the_table_covers_every_exercise_with_at_least_15_answers():
    checks = {wrong.check for wrong in WRONG_ANSWERS}
    assert len(WRONG_ANSWERS) >= 15 and len(checks) == 6


def test_the_model_answers_statements_are_found_in_the_solutions_notebook():
    statements = model_answer_statements()
    for expected in ("loss.backward()", "model.eval()", "returnmagnitude,direction"):
        assert expected in statements
    assert "self.in_features,self.out_features=base_layer.in_features,base_layer.out_features" not in statements


def test_a_statement_of_a_model_answer_is_found_however_it_is_spaced():
    cell = (
        "def f(W):\n    x = 1  # given\n    ### BEGIN SOLUTION\n    with torch.no_grad():  # why\n"
        "        m = torch.linalg.vector_norm(W, dim=1,\n                                     keepdim=True)\n"
        "    return m\n    ### END SOLUTION\n"
    )
    statements = statements_of(cell)
    assert "withtorch.no_grad():" in statements and "returnm" not in statements  # too short to count
    assert "m=torch.linalg.vector_norm(W,dim=1,keepdim=True)" in statements and "x=1" not in statements
    pasted = "Use m = torch.linalg.vector_norm(W, dim=1, keepdim=True)."
    assert any(s in normalised(pasted) for s in statements)


def _message_texts(path: Path) -> list[str]:
    """Return the string literals of a module that are not docstrings (f-strings with {} for each value)."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    texts = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            texts.append("".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            texts.append(node.value)
    return texts


def test_no_text_a_check_can_say_is_shaped_like_code_or_states_a_model_answer():
    """Every string of the checks, not only the messages the table reaches."""
    package = Path(labhelpers.checks.__file__).parent
    found = []
    for path in sorted(package.rglob("*.py")):
        for text in _message_texts(path):
            flat = normalised(text)
            found += [(path.name, text, c) for c in code_shapes_in(text)]
            found += [(path.name, text, s) for s in model_answer_statements() if s in flat]
    assert found == []
