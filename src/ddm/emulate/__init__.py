"""Online emulation of retraining without some groups: perturbations and (batched) fine-tuning."""

from ddm.emulate.batched import batched_logits, emulate_logits, finetune_batched, linear_step, synset_gradients
from ddm.emulate.finetune import finetune_reference, image_weights
from ddm.emulate.perturbations import perturbation_weights, sample_perturbations

__all__ = [
    "batched_logits", "emulate_logits", "finetune_batched", "finetune_reference", "image_weights", "linear_step",
    "perturbation_weights", "sample_perturbations", "synset_gradients",
]
