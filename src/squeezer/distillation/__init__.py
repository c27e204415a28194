"""Knowledge distillation: train a student with what a teacher knows (family D).

    import squeezer as sq
    from squeezer.distillation import KD, AttentionTransfer

    sq.distill(student, teacher, train, KD(temperature=4, alpha=0.9), epochs=10, lr=0.05)
    sq.distill(student, "teacher.pt", train,
               [KD(), AttentionTransfer(pairs=[("layer2", "layer2"), ("layer3", "layer3")])])

Each method is a frozen config whose handler builds a loss term; ``distill`` runs
:func:`squeezer.fit` with a callback that runs the teacher on every batch and adds the terms.
Intermediate tensors are named by module path and captured with forward hooks
(:class:`FeatureTap`); a path that does not exist, a teacher with other classes or features
that cannot be compared are reported before training starts.
"""

from squeezer.distillation.bayesian import SGLD, sgld_ensemble
from squeezer.distillation.features import FeatureTap, resolve
from squeezer.distillation.net2net import deepen_, widen_
from squeezer.distillation.run import Distiller, Teachers, distill, load_teacher
from squeezer.distillation.synthetic import munge, unlabelled
from squeezer.distillation.terms import (
    KD,
    NST,
    AttentionTransfer,
    FitNets,
    Logits,
    Term,
    attention_map,
    kd_loss,
    mmd2_poly,
    term_for,
)
from squeezer.distillation.tree import SoftDecisionTree, TreeBalance

__all__ = [
    "KD",
    "NST",
    "SGLD",
    "AttentionTransfer",
    "Distiller",
    "FeatureTap",
    "FitNets",
    "Logits",
    "SoftDecisionTree",
    "Teachers",
    "Term",
    "TreeBalance",
    "attention_map",
    "deepen_",
    "distill",
    "kd_loss",
    "load_teacher",
    "mmd2_poly",
    "munge",
    "resolve",
    "sgld_ensemble",
    "term_for",
    "unlabelled",
    "widen_",
]
