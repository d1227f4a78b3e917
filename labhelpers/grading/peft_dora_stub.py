"""What the probe sandbox shows in place of PEFT's `peft/tuners/lora/dora.py` while a submission's answers are checked.

Graded answers to Exercise 2 must compute DoRA themselves: every DoRA layer of PEFT raises ReferenceUnavailable here,
which the judge reports as "used PEFT's DoRA layer". LoRA (use_dora=False), LoraConfig and get_peft_model still work.
"""

from labhelpers.probes.core import ReferenceUnavailable


class DoraLinearLayer:
    def __init__(self, *args, **kwargs):
        raise ReferenceUnavailable(
            "PEFT's DoRA layer is not available to graded answers: Exercise 2 asks for your own"
        )


class DoraEmbeddingLayer(DoraLinearLayer):
    pass


class _DoraConvNdLayer(DoraLinearLayer):
    pass


class DoraConv1dLayer(_DoraConvNdLayer):
    pass


class DoraConv2dLayer(_DoraConvNdLayer):
    pass


class DoraConv3dLayer(_DoraConvNdLayer):
    pass
