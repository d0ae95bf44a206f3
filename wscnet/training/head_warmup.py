"""Training-only warm-up of the WSCNet head: the model at inference stays the paper's.

Two linear ramps over the first epochs, both ending before training does:

- ``pool_warmup_epochs``: Eq. (1) pools with share·GMP + (1 - share)·GAP, share 0 → 1, so the
  detection loss starts with GAP's dense gradient instead of GMP's one location per map;
- ``det_warmup_epochs``: the detection-loss weight of Eq. (7) goes det_weight_start → det_weight.

And, with ``clip_per_loss``, the gradient-norm clip grows with the detection-loss weight
(grad_clip · (1 + weight)), so the second loss does not shrink the first one's steps.

With ``zero_init_coupled``, the classifier's weights on the coupled half GAP(M∘F) of Eq. (4)
start at 0: the classification branch starts as the CAM baseline's and takes in the sentiment
map as training makes it informative, instead of reading a random map from step 0.

``detach_coupled_map`` (``WSCNet.training_detach_map``, set by the trainer) stops the
classification loss at M inside M∘F: the detector learns from Eq. (2) alone.

``cam_stage_epochs`` (``CamStage``) trains the backbone as the CAM baseline's for the first epochs:
the detector reads F detached (the detection loss trains the detector, not the backbone), the
classifier's weights on GAP(M∘F) are held where they started (0 with ``zero_init_coupled``, so
the coupled half adds nothing to the logits nor to the backbone's gradient), and the backbone with
the classifier is clipped on its own at ``grad_clip``, as CAM is. Afterwards the joint training of
the paper, with the detector and M already trained.

``hold_coupled_epochs`` holds the coupled half alone (the detection loss trains the backbone from
the start): the classifier reads GAP(F) only until M has had those epochs to become informative.

``coupled_grad_scale`` < 1 multiplies the gradient of the classifier's weights on GAP(M∘F) (after
any hold): the coupled half learns at that share of the classifier's rate, so its logits cannot
outgrow a map that is not yet class-specific (docs/scratch-recipe.md, "A harder set").
``classifier_grad_scale`` does the same for the whole classifier (both halves and the bias): under
the per-loss clip budget (twice CAM's) a scale of 0.5 gives it about CAM's step, while the backbone
and the detector keep theirs.

``coupled_slow_epochs`` > 0 applies ``coupled_grad_scale`` and ``coupled_feature_grad`` (the share of
the classification loss's gradient through GAP(M∘F) that reaches F, ``WSCNet.coupled_descriptor``)
for those first epochs only: the coupled half starts slow and then learns at the classifier's rate.
A feature share above 1 gives F, while the coupled weights are slowed and so small, about the
gradient it would get from weights that learn at full rate. ``coupled_feature_brake`` P > 0 (same
window) divides that share by s^P where the batch's GAP(M∘F) is s > 1 times GAP(F)
(``WSCNet._coupled_feature_share``): the gradient into F through M∘F grows with M.
``coupled_feature_floor`` keeps the braked share from falling below it (1: the brake takes back the
amplification, never more, so the share does not jump when the window ends).
``coupled_feature_delay`` starts that share (and its brake) only after so many epochs: before it the
coupled path passes its plain gradient into F.
``coupled_logit_cap`` > 0 brakes the coupled half only while it runs away: when, on the batch, the
mean norm of the logits from GAP(M∘F) exceeds cap × that of the logits from GAP(F), the coupled-half
gradient is further multiplied by (cap / ratio)²; below the cap it learns at its own scale.
That slows the weights but does not hold the logits, which also grow with M and F.
``coupled_weight_cap`` > 0 holds them: after each optimizer step, where the batch's logits from
GAP(M∘F) (with the updated weights) exceed cap × those from GAP(F), the coupled-half weights are
scaled down to make them equal; the model stays the paper's, only the weights' size is bounded.
``coupled_input_brake`` P > 0 brakes by the input instead of the output: where the batch's GAP(M∘F) is
s > 1 times GAP(F) (mean of the per-image norm ratios), the coupled-half gradient is divided by s^P.
A linear half's logits move by its rate × |input|² per step, so P = 2 gives both halves the same
logit step whatever the size of M; it acts as soon as M grows, before the coupled weights have.
The brakes and the cap measure the batch (averaged over the processes under DDP, so every copy
scales alike).

Validation and export always see plain GMP (the pooling module ignores the share in eval mode).
"""

import torch

from ..model import coupling_scale, gradient_share
from .options import TrainOptions


class HeadWarmup:
    def __init__(self, options: TrainOptions, steps_per_epoch: int) -> None:
        self.pool_steps = options.pool_warmup_epochs * steps_per_epoch
        self.det_steps = options.det_warmup_epochs * steps_per_epoch
        self.det_start, self.det_end = options.det_weight_start, options.det_weight
        self.active = options.head == "wscnet" and options.pool == "max" and self.pool_steps > 0
        self.clip = options.grad_clip
        self.clip_per_loss = options.clip_per_loss and options.head == "wscnet"

    def max_share(self, step: int) -> float:
        return _ramp(step, self.pool_steps, 0.0, 1.0)

    def det_weight(self, step: int) -> float:
        return _ramp(step, self.det_steps, self.det_start, self.det_end)

    def grad_clip(self, step: int) -> float:
        """The clipping threshold: per loss term, the joint loss gets (1 + det weight) budgets."""
        return self.clip * (1.0 + self.det_weight(step)) if self.clip_per_loss else self.clip

    def apply(self, model, step: int) -> None:
        if self.active:
            model.pool_map.training_max_share = self.max_share(step)


def zero_init_coupled_weights(model) -> bool:
    """Zero the FC weights that read GAP(M∘F); False when the model has no coupled half."""
    config = model.config
    if config.head != "wscnet" or config.coupling != "both":
        return False
    with torch.no_grad():
        model.classifier.weight[:, model.num_features :] = 0.0
    return True


def _ramp(step: int, steps: float, start: float, end: float) -> float:
    if steps <= 0 or step >= steps:
        return end
    return start + (end - start) * step / steps


class CamStage:
    """The first ``cam_stage_epochs`` of a WSCNet run train the backbone exactly as CAM's (see above);
    with ``det_backbone_grad`` < 1 only that share of the detection loss's gradient reaches the
    backbone, all run long (the forward values are unchanged)."""

    def __init__(self, model, options: TrainOptions, steps_per_epoch: int) -> None:
        self.model = model
        wscnet = options.head == "wscnet"
        self.steps = options.cam_stage_epochs * steps_per_epoch if wscnet else 0
        self.hold_steps = max(self.steps, options.hold_coupled_epochs * steps_per_epoch if wscnet else 0)
        self.det_backbone_grad = options.det_backbone_grad
        self.coupled_grad_scale = options.coupled_grad_scale if wscnet else 1.0
        self.coupled_slow_steps = options.coupled_slow_epochs * steps_per_epoch
        self.coupled_feature_grad = options.coupled_feature_grad if wscnet else 1.0
        self.coupled_feature_brake = options.coupled_feature_brake if wscnet else 0.0
        self.coupled_feature_delay_steps = options.coupled_feature_delay * steps_per_epoch
        self.model.training_coupled_feature_floor = options.coupled_feature_floor
        self.slow = True
        self.classifier_grad_scale = options.classifier_grad_scale if wscnet else 1.0
        coupled = wscnet and model.config.coupling == "both"
        self.coupled_logit_cap = options.coupled_logit_cap if coupled else 0.0
        self.coupled_weight_cap = options.coupled_weight_cap if coupled else 0.0
        self.coupled_input_brake = options.coupled_input_brake if coupled else 0.0
        self.grad_clip = options.grad_clip
        self.active = self.holding = False
        self.descriptor: torch.Tensor | None = None
        self.last_brake = self.last_input_brake = self.last_weight_factor = 1.0
        if wscnet and (self.steps > 0 or self.det_backbone_grad != 1.0):
            model.detector.register_forward_pre_hook(self._scale_input_gradient)
        if self.coupled_logit_cap > 0 or self.coupled_weight_cap > 0 or self.coupled_input_brake > 0:
            model.classifier.register_forward_pre_hook(self._keep_descriptor)

    def _keep_descriptor(self, module, args):
        if module.training:
            self.descriptor = args[0].detach()

    def _scale_input_gradient(self, module, args):
        if not module.training:
            return None
        share = 0.0 if self.active else self.det_backbone_grad
        return None if share == 1.0 else (gradient_share(args[0], share),)

    def apply(self, step: int) -> None:
        self.active = step < self.steps
        self.holding = step < self.hold_steps
        self.slow = self.coupled_slow_steps <= 0 or step < self.coupled_slow_steps
        shared = self.slow and step >= self.coupled_feature_delay_steps
        self.model.training_coupled_feature_grad = self.coupled_feature_grad if shared else 1.0
        self.model.training_coupled_feature_brake = self.coupled_feature_brake if shared else 0.0

    def scale_classifier_gradient(self) -> None:
        """Scale the classifier's gradient by ``classifier_grad_scale``; zero the part on GAP(M∘F)
        while the stage or the hold lasts, and afterwards scale it by ``coupled_grad_scale`` too."""
        weight, bias = self.model.classifier.weight.grad, self.model.classifier.bias.grad
        if self.classifier_grad_scale != 1.0:
            for grad in (weight, bias):
                if grad is not None:
                    grad *= self.classifier_grad_scale
        slow_scale = self.coupled_grad_scale if self.slow else 1.0
        scale = 0.0 if self.holding else slow_scale * self.coupled_brake() * self.coupled_input_brake_factor()
        if scale != 1.0 and self.model.config.coupling == "both" and weight is not None:
            weight[:, self.model.num_features :] *= scale

    def coupled_brake(self) -> float:
        """(cap / ratio)² when the batch's coupled-half logits outgrow cap × its GAP(F)-half logits, else 1."""
        self.last_brake = 1.0
        if self.coupled_logit_cap <= 0 or self.descriptor is None:
            return 1.0
        global_norm, coupled_norm = self._batch_logit_norms()
        if coupled_norm > self.coupled_logit_cap * global_norm:
            self.last_brake = (self.coupled_logit_cap * global_norm / coupled_norm) ** 2
        return self.last_brake

    @torch.no_grad()
    def coupled_input_brake_factor(self) -> float:
        """1 / s^P where the batch's GAP(M∘F) is s > 1 times its GAP(F), else 1."""
        self.last_input_brake = 1.0
        if self.coupled_input_brake <= 0 or self.descriptor is None:
            return 1.0
        n = self.model.num_features
        scale = self._mean_over_processes([coupling_scale(self.descriptor[:, :n], self.descriptor[:, n:])])[0]
        if scale > 1.0:
            self.last_input_brake = scale**-self.coupled_input_brake
        return self.last_input_brake

    @torch.no_grad()
    def cap_coupled_weights(self) -> None:
        """After the optimizer step: scale the coupled-half weights down so the batch's logits from
        GAP(M∘F) are at most ``coupled_weight_cap`` × those from GAP(F)."""
        self.last_weight_factor = 1.0
        if self.coupled_weight_cap <= 0 or self.descriptor is None:
            return
        global_norm, coupled_norm = self._batch_logit_norms()
        if coupled_norm > self.coupled_weight_cap * global_norm:
            self.last_weight_factor = self.coupled_weight_cap * global_norm / coupled_norm
            self.model.classifier.weight[:, self.model.num_features :] *= self.last_weight_factor

    def _batch_logit_norms(self) -> tuple[float, float]:
        """The two halves' logit norms on this batch, averaged over the processes under DDP."""
        global_norm, coupled_norm = self._mean_over_processes(self.model.logit_half_norms(self.descriptor))
        return global_norm, coupled_norm

    def _mean_over_processes(self, values) -> list[float]:
        """``values`` (numbers) averaged over the processes under DDP, so every copy scales alike."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return [float(v) for v in values]
        shared = torch.tensor([float(v) for v in values], device=self.descriptor.device)
        torch.distributed.all_reduce(shared)
        shared /= torch.distributed.get_world_size()
        return shared.tolist()

    def clip(self, threshold: float) -> None:
        """Clip the gradients: in the stage, backbone + classifier at grad_clip (CAM's budget) and the
        detector on its own; otherwise every parameter together at ``threshold``."""
        if threshold <= 0:
            return
        if not self.active:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), threshold)
            return
        detector = {id(p) for p in self.model.detector.parameters()}
        cam_part = [p for p in self.model.parameters() if id(p) not in detector]
        torch.nn.utils.clip_grad_norm_(cam_part, self.grad_clip)
        torch.nn.utils.clip_grad_norm_(self.model.detector.parameters(), self.grad_clip)
