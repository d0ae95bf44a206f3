"""Named training recipes: presets of TrainOptions fields.

- ``paper``: METHOD.md's settings, for an ImageNet-pretrained backbone (the defaults).
- ``scratch-flags``: the older from-scratch flags (high rate, cosine, warm-up, clipping); the
  WSCNet head is trained as the paper says from the first step.
- ``scratch`` (the from-scratch default): ``scratch-slow-weights-late`` below. It meets the
  acceptance of docs/scratch-recipe.md (validation accuracy by epoch 10 within 0.05 of CAM's, test
  accuracy and map F at least CAM's, mean of 3 seeds) on the plain, salient and natural sets.
- ``scratch-warmup``: ``scratch-flags`` plus the head warm-up of ``head_warmup.py``: for the first epochs the
  detection loss is ramped in from 0 and Eq. (1) pools GAP -> GMP; the classifier's weights on
  the coupled half GAP(M∘F) start at 0; and the classification loss does not flow back through
  the map M of M∘F (M learns from the detection loss alone, the classifier still reads it).
  The trained model, and every validation and export, is the paper's WSCNet (GMP, softmax
  weights, coupling). Every recipe below starts from it.

- ``scratch-staged``: ``scratch-warmup`` whose first 3 epochs train the backbone as the CAM baseline's
  (``cam_stage_epochs``): the detector learns on detached features and the coupled half waits at 0.
- ``scratch-held``: ``scratch-warmup`` whose coupled-half weights wait at 0 for the first 3 epochs
  (``hold_coupled_epochs``); the detection loss trains the backbone from the start.
- ``scratch-cam-clip``: ``scratch-warmup`` with one global gradient clip at ``grad_clip``, the budget CAM
  has, instead of ``grad_clip`` per loss term (see docs/scratch-recipe.md, "A harder set").
- ``scratch-staged-cam-clip``: both of the two above.
- ``scratch-held-cam-clip``: ``scratch-held`` under CAM's clip budget.
- ``scratch-slow-coupled``: ``scratch-warmup`` whose coupled-half weights learn at a quarter of the
  classifier's rate (``coupled_grad_scale``), the per-loss clip budget kept.
- ``scratch-slow-classifier``: ``scratch-warmup`` whose classifier (both halves) steps at half the rate
  (``classifier_grad_scale``): about CAM's step under the per-loss budget, the backbone keeps its own.
- ``scratch-slow-both``: both scales: the whole classifier × 0.5 and, on top of it, its coupled-half
  weights × 0.25, so their gradient is 0.125 of the unscaled one before the clip.
- ``scratch-slow-both-eighth``: the same with the coupled-half weights × 0.125 on top of the 0.5
  (0.0625 of the unscaled gradient).
- ``scratch-braked``: ``scratch-slow-classifier`` whose coupled half is braked only while it runs
  away (``coupled_logit_cap`` 1: its logits larger than those from GAP(F)); ``scratch-braked-2``
  lets them grow to twice. The brake slows the weights but does not hold the logits, which also
  grow with M and F (docs/scratch-recipe.md).
- ``scratch-capped``: ``scratch-slow-classifier`` whose coupled-half weights are scaled down after
  each step where its logits exceed twice those from GAP(F) (``coupled_weight_cap`` 2);
  ``scratch-capped-1`` holds them at once those.
- ``scratch-slow-start``: ``scratch-slow-both`` whose coupled-half scale (0.25) lasts the first 6
  epochs (``coupled_slow_epochs``); afterwards the coupled half learns as in ``scratch-slow-classifier``.
- ``scratch-even``: ``scratch-slow-classifier`` whose coupled half is braked by the size of its input:
  where GAP(M∘F) is s > 1 times GAP(F), its gradient is divided by s² (``coupled_input_brake`` 2), so
  both halves' logits take the same step; ``scratch-even-1`` divides by s.
- ``scratch-slow-weights``: ``scratch-slow-start`` whose slow epochs pass 4 × the classification loss's
  gradient through GAP(M∘F) on to F: the coupled weights are about a quarter of their size
  under ``scratch-slow-classifier`` then, so F gets about the gradient it gets there.
  ``scratch-slow-weights-braked`` divides that 4 by s² where the batch's GAP(M∘F) is s > 1 times
  GAP(F) (``coupled_feature_brake`` 2): the gradient into F through M∘F grows with M;
  ``scratch-slow-weights-braked-4`` by s⁴; ``scratch-slow-weights-braked-half`` starts from 2 instead of 4.
  ``scratch-slow-weights-floored`` brakes only the amplification (``coupled_feature_floor`` 1): the
  share never falls below 1, so it does not jump when the slow epochs end.
  ``scratch-slow-weights-even`` adds ``scratch-even``'s input brake on the coupled weights.
  ``scratch-slow-weights-late`` starts the braked × 4 only after 2 epochs (``coupled_feature_delay``):
  in the first two the map is still small on every set, so the brake cannot tell them apart.
- ``scratch-quiet``: ``scratch-slow-classifier`` whose classification loss passes only a quarter of
  its gradient through GAP(M∘F) on to the backbone's features (``coupled_feature_grad``; the
  coupled path's gradient into F is what spikes the backbone's gradient on the plain set);
  ``scratch-quiet-0`` passes none (the backbone learns from GAP(F) and the detection loss).

A preset fills only the fields still at their TrainOptions default, so an explicit flag wins.
"""

from dataclasses import fields

from ..errors import UserError
from .options import TrainOptions

_SCRATCH_FLAGS = {
    "lr": 0.02,
    "head_lr": 0.02,
    "lr_schedule": "cosine",
    "warmup_epochs": 1,
    "grad_clip": 2.0,
    "batch_size": 16,
}
# Options that act on the detection branch or the coupled half only: a CAM run ignores them, so
# recipes that differ only here share one CAM run (wscnet/ablation.py).
WSCNET_ONLY_FIELDS = (
    "coupled_feature_floor",
    "coupled_feature_delay",
    "coupled_feature_brake",
    "coupled_input_brake",
    "det_weight_start",
    "det_warmup_epochs",
    "pool_warmup_epochs",
    "clip_per_loss",
    "zero_init_coupled",
    "detach_coupled_map",
    "det_label_smoothing",
    "cam_stage_epochs",
    "det_backbone_grad",
    "hold_coupled_epochs",
    "coupled_grad_scale",
    "classifier_grad_scale",
    "coupled_logit_cap",
    "coupled_weight_cap",
    "coupled_feature_grad",
    "coupled_slow_epochs",
)
RECIPES: dict[str, dict] = {
    "paper": {},
    "scratch-flags": _SCRATCH_FLAGS,
    "scratch": {},  # filled below: the from-scratch default is the last recipe measured
    "scratch-warmup": {
        **_SCRATCH_FLAGS,
        "det_weight_start": 0.0,
        "det_warmup_epochs": 2.0,
        "pool_warmup_epochs": 2.0,
        "clip_per_loss": True,
        "zero_init_coupled": True,
        "detach_coupled_map": True,
    },
}
# ``scratch-warmup`` whose first epochs train the backbone as CAM's (head_warmup.CamStage)
RECIPES["scratch-staged"] = {**RECIPES["scratch-warmup"], "cam_stage_epochs": 3.0}
# ``scratch-warmup`` whose classifier reads GAP(F) alone for 3 epochs (the coupled-half weights wait at 0)
RECIPES["scratch-held"] = {**RECIPES["scratch-warmup"], "hold_coupled_epochs": 3.0}
# ``scratch-warmup`` with CAM's clip budget: one global clip at grad_clip instead of grad_clip per loss
RECIPES["scratch-cam-clip"] = {**RECIPES["scratch-warmup"], "clip_per_loss": False}
# both: 3 epochs trained as CAM, then the joint training under CAM's clip budget
RECIPES["scratch-staged-cam-clip"] = {**RECIPES["scratch-staged"], "clip_per_loss": False}
# the coupled half held for 3 epochs, under CAM's clip budget
RECIPES["scratch-held-cam-clip"] = {**RECIPES["scratch-held"], "clip_per_loss": False}
# ``scratch-warmup`` whose coupled half learns at a quarter of the classifier's rate (its logits stay small)
RECIPES["scratch-slow-coupled"] = {**RECIPES["scratch-warmup"], "coupled_grad_scale": 0.25}
# ``scratch-warmup`` whose classifier moves at about CAM's step while the backbone keeps the per-loss budget
RECIPES["scratch-slow-classifier"] = {**RECIPES["scratch-warmup"], "classifier_grad_scale": 0.5}
# both: the classifier at about CAM's step, and its coupled half at a quarter of that
RECIPES["scratch-slow-both"] = {**RECIPES["scratch-slow-classifier"], "coupled_grad_scale": 0.25}
# the same, the coupled half at an eighth of the classifier's step
RECIPES["scratch-slow-both-eighth"] = {**RECIPES["scratch-slow-classifier"], "coupled_grad_scale": 0.125}
# the classifier at about CAM's step; its coupled half braked only while its logits outgrow GAP(F)'s
RECIPES["scratch-braked"] = {**RECIPES["scratch-slow-classifier"], "coupled_logit_cap": 1.0}
RECIPES["scratch-braked-2"] = {**RECIPES["scratch-slow-classifier"], "coupled_logit_cap": 2.0}
# the classifier at about CAM's step; its coupled half's logits held at most twice those from GAP(F)
RECIPES["scratch-capped"] = {**RECIPES["scratch-slow-classifier"], "coupled_weight_cap": 2.0}
RECIPES["scratch-capped-1"] = {**RECIPES["scratch-slow-classifier"], "coupled_weight_cap": 1.0}
# the classifier at about CAM's step; the coupled half passes a quarter of its gradient on to F (none)
# ``scratch-slow-both`` for the first 6 epochs, then ``scratch-slow-classifier``: a slow start only
RECIPES["scratch-slow-start"] = {**RECIPES["scratch-slow-both"], "coupled_slow_epochs": 6.0}
# the classifier at about CAM's step; the coupled half's logit step held to the GAP(F) half's (s^-2), or s^-1
RECIPES["scratch-even"] = {**RECIPES["scratch-slow-classifier"], "coupled_input_brake": 2.0}
RECIPES["scratch-even-1"] = {**RECIPES["scratch-slow-classifier"], "coupled_input_brake": 1.0}
# ``scratch-slow-start`` whose features still get, in the slow epochs, about the coupled path's gradient of
# full-rate weights (× 4 = 1 / coupled_grad_scale): only the coupled weights start slow
RECIPES["scratch-slow-weights"] = {**RECIPES["scratch-slow-start"], "coupled_feature_grad": 4.0}
# the same, that × 4 divided by s² where M∘F has grown to s > 1 times F (it grows with M)
RECIPES["scratch-slow-weights-braked"] = {**RECIPES["scratch-slow-weights"], "coupled_feature_brake": 2.0}
RECIPES["scratch-slow-weights-braked-half"] = {**RECIPES["scratch-slow-weights-braked"], "coupled_feature_grad": 2.0}
RECIPES["scratch-slow-weights-braked-4"] = {**RECIPES["scratch-slow-weights"], "coupled_feature_brake": 4.0}
# the brake takes back the × 4 only, never below 1: no jump in F's gradient when the window ends
RECIPES["scratch-slow-weights-floored"] = {**RECIPES["scratch-slow-weights-braked"], "coupled_feature_floor": 1.0}
# the × 4 (braked) only from epoch 2 on, once the detection loss is fully ramped in and M has a size to brake by
RECIPES["scratch-slow-weights-late"] = {**RECIPES["scratch-slow-weights-braked"], "coupled_feature_delay": 2.0}
# and the coupled weights braked by their input's size as in ``scratch-even`` (after the window too)
RECIPES["scratch-slow-weights-even"] = {**RECIPES["scratch-slow-weights-braked"], "coupled_input_brake": 2.0}
# the from-scratch default: the one recipe that met the acceptance on all three sets (docs/scratch-recipe.md)
RECIPES["scratch"] = dict(RECIPES["scratch-slow-weights-late"])
RECIPES["scratch-quiet"] = {**RECIPES["scratch-slow-classifier"], "coupled_feature_grad": 0.25}
RECIPES["scratch-quiet-0"] = {**RECIPES["scratch-slow-classifier"], "coupled_feature_grad": 0.0}


def apply_recipe(options: TrainOptions, name: str) -> TrainOptions:
    """Set the recipe's fields that ``options`` leaves at their default; returns ``options``."""
    if name not in RECIPES:
        raise UserError(f"--recipe must be one of {', '.join(RECIPES)}; got {name!r}")
    defaults = {f.name: f.default for f in fields(TrainOptions)}
    for key, value in RECIPES[name].items():
        if getattr(options, key) == defaults[key]:
            setattr(options, key, value)
    options.recipe = name
    return options
