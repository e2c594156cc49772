"""What the two coordinate-writing kinds (lifting, motion prediction) share: the soft-argmax L1 term of training
(docs/design.md D4) and the quantisation floor they report beside their errors."""

from __future__ import annotations

from ..tokenization.targets import quantisation_floor
from .base import TaskKind


class CoordinateKind(TaskKind):
    """A kind whose target is continuous coordinates written as X/Y/Z bin tokens."""

    grammar = "coordinates"
    coordinate_targets = True

    def auxiliary_loss(self, model, logits, labels, coordinates, layout, weight):
        """``weight`` × L1 between the soft-argmax expectation of the coordinate logits and the true values."""
        if not weight:
            return None
        if coordinates is None:
            raise ValueError(f"task {self.spec.name!r}: its loss has an L1 term on coordinates (auxiliary weight "
                             f"{weight}); pass coordinates=... (the continuous targets) with labels")
        soft = model.coordinate_expectation(logits, self.spec.name, layout)
        return weight * (soft - coordinates.to(soft.dtype)).abs().mean()

    def decode_coordinates(self, model, state, pose):
        return model.predict(pose, state.layout(train=False), state.name)

    @staticmethod
    def floor(state, target) -> dict:
        floor = quantisation_floor(target, state.eval_examples.codec.quantizer)
        return {"floor_mm": 1000 * floor["mean_euclidean_error"], "clip_rate_%": 100 * floor["clip_rate"]}
