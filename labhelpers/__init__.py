"""DoRA Lab helpers."""

import warnings

# PEFT 0.21 reads transformers' deprecated `is_gradient_checkpointing` in get_peft_model: the FutureWarning it prints
# is about the libraries, not the student's code, and nbgrader counts any stderr in a test cell as a failure.
warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
