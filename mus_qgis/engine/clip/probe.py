"""A few corrections teach the model: a linear probe on stored image embeddings.

The probe is a multinomial logistic regression on the normalised image embeddings whose weights
start at the zero-shot classifier (the model's logit scale times the label set's text embeddings)
and are pulled back toward it by the penalty ``regularisation / 2 × (‖W − W_text‖² + ‖b‖²)``
against the summed cross-entropy of the corrected points. With a handful of corrections it stays
near zero-shot; with more it moves further (the prior weighs less against more evidence), as in
the probes initialised from the text weights that improve on zero-shot CLIP from a few examples.

Its accuracy is cross-validated (stratified folds; leave-one-out for a few points): every point
is predicted by a probe fitted without it, and zero-shot is scored on the same points.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ...shared.errors import MusError
from ...shared.labels import LabelSet
from .scoring import Scores, scores_from_logits

PROBE_FORMAT = 1
DEFAULT_REGULARISATION = 0.3
# Up to this many corrected points, leave-one-out (each point its own fold) is cheap and uses
# every other point for training; above it, stratified k-fold.
LEAVE_ONE_OUT_UP_TO = 40
MAX_FOLDS = 5


class ProbeError(MusError, ValueError):
    """A probe cannot be trained from these corrections, read from its file, or used here."""


@dataclass
class Probe:
    """Weights (L×D) and biases (L) over normalised image embeddings, and what they belong to."""

    weights: object  # float32 L×D
    bias: object  # float32 L
    metadata: dict = field(default_factory=dict)
    source: str = ""  # the file it was read from

    def logits(self, vectors):
        """N×L logits of N normalised embeddings (NaN rows stay NaN)."""
        import numpy as np

        vectors = np.asarray(vectors, dtype=np.float32)
        return vectors @ self.weights.T + self.bias

    def scores(self, vectors, label_set: LabelSet, top_k: int = 3) -> Scores:
        logits = self.logits(vectors)
        return scores_from_logits(logits, logits, label_set, top_k)

    def summary(self) -> dict:
        """What a classification scored by this probe records in its run settings."""
        meta = self.metadata
        return {
            "file": self.source,
            "weights_sha256": meta.get("weights_sha256", ""),
            "trained_points": len(meta.get("trained_on", [])),
            "regularisation": meta.get("regularisation"),
            "cross_validation": meta.get("cross_validation", {}),
        }

    def check_fits(self, model_identity: str, view_key: str, label_set: LabelSet) -> None:
        """Refuse a probe trained for another model, view setting or label set, naming both."""
        meta = self.metadata
        wanted = {
            "model_identity": model_identity,
            "view_key": view_key,
            "label_set_hash": label_set.content_hash(),
        }
        words = {
            "model_identity": "model",
            "view_key": "views",
            "label_set_hash": "label set (labels, order and templates)",
        }
        for name, value in wanted.items():
            if meta.get(name) != value:
                held = meta.get(name)
                if name == "label_set_hash":
                    held = f"{meta.get('label_set')!r} ({held})"
                    value = f"{label_set.name!r} ({value})"
                where = f" {self.source}" if self.source else ""
                raise ProbeError(
                    f"The trained probe{where} was trained for the {words[name]} {held}, not "
                    f"{value} as here. Use it with the model, views and label set it was trained "
                    "for, or train a probe for these (mus:trainprobe)."
                )

    def save(self, path: str | Path) -> tuple[Path, Path]:
        """The probe as ``.npz`` (weights, bias, metadata as JSON text) and a ``.json`` beside
        it to read; loading needs the ``.npz`` only."""
        import numpy as np

        path = Path(path).with_suffix(".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = dict(self.metadata, format=PROBE_FORMAT, weights_sha256=self._digest())
        text = json.dumps(meta, ensure_ascii=False, indent=1)
        with open(path, "wb") as handle:
            np.savez(
                handle,
                weights=np.asarray(self.weights, dtype="<f4"),
                bias=np.asarray(self.bias, dtype="<f4"),
                metadata=np.asarray(text),
            )
        readable = path.with_suffix(".json")
        readable.write_text(text + "\n", encoding="utf-8")
        self.metadata = meta
        return path, readable

    def _digest(self) -> str:
        import numpy as np

        digest = hashlib.sha256(np.asarray(self.weights, dtype="<f4").tobytes())
        digest.update(np.asarray(self.bias, dtype="<f4").tobytes())
        return digest.hexdigest()


def load_probe(path: str | Path) -> Probe:
    """A probe saved by :meth:`Probe.save` (the ``.npz``, or its ``.json`` beside it)."""
    import numpy as np

    path = Path(path)
    if path.suffix.lower() == ".json":
        path = path.with_suffix(".npz")
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ProbeError(
            f"The trained probe {path} {what}: give the .npz that mus:trainprobe wrote."
        )
    try:
        with np.load(path, allow_pickle=False) as arrays:
            weights, bias = arrays["weights"], arrays["bias"]
            metadata = json.loads(str(arrays["metadata"]))
    except (OSError, ValueError, KeyError) as exc:
        raise ProbeError(
            f"The trained probe {path} cannot be read ({exc}): give the .npz that "
            "mus:trainprobe wrote, or train the probe again."
        ) from exc
    probe = Probe(weights.astype(np.float32), bias.astype(np.float32), metadata, str(path))
    if metadata.get("format") != PROBE_FORMAT or metadata.get("weights_sha256") != probe._digest():
        raise ProbeError(
            f"The trained probe {path} is damaged or of another format (its weights do not match "
            "its checksum): train the probe again (mus:trainprobe)."
        )
    if weights.ndim != 2 or bias.shape != (weights.shape[0],):
        raise ProbeError(
            f"The trained probe {path} has weights of the wrong shape: train it again."
        )
    return probe


def zero_shot_weights(text_vectors, logit_scale: float):
    """The zero-shot classifier as a linear layer: logit scale × text embeddings, no bias."""
    import numpy as np

    weights = float(logit_scale) * np.asarray(text_vectors, dtype=np.float64)
    return weights, np.zeros(weights.shape[0])


def fit_weights(vectors, targets, text_vectors, logit_scale: float, regularisation: float):
    """Weights (L×D) and biases (L) of the probe fitted on ``vectors`` (N×D) and label indices
    ``targets`` (N), starting at and pulled toward zero-shot (see the module's docstring)."""
    import numpy as np
    import torch

    if regularisation <= 0:
        raise ProbeError(f"The regularisation must be above 0, not {regularisation}.")
    start_weights, _ = zero_shot_weights(text_vectors, logit_scale)
    anchor = torch.from_numpy(np.ascontiguousarray(start_weights))
    x = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float64))
    y = torch.from_numpy(np.asarray(targets, dtype=np.int64))
    delta = torch.zeros(anchor.shape, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(anchor.shape[0], dtype=torch.float64, requires_grad=True)
    # The problem is convex and small (corrections, not the city): full-batch L-BFGS converges
    # in a few dozen steps to the same optimum whatever the thread count.
    optimiser = torch.optim.LBFGS(
        [delta, bias],
        lr=1.0,
        max_iter=300,
        tolerance_grad=1e-6,
        tolerance_change=1e-9,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def loss_and_gradient():
        optimiser.zero_grad()
        logits = x @ (anchor + delta).T + bias
        loss = torch.nn.functional.cross_entropy(logits, y, reduction="sum")
        loss = loss + 0.5 * regularisation * (delta.pow(2).sum() + bias.pow(2).sum())
        loss.backward()
        return loss

    # Small matrices: threads cost more than they give (and a busy machine makes it far worse).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        optimiser.step(loss_and_gradient)
    finally:
        torch.set_num_threads(threads)
    weights = (anchor + delta).detach().numpy().astype(np.float32)
    return weights, bias.detach().numpy().astype(np.float32)


def stratified_folds(targets, seed: int = 0):
    """Fold of each point: leave-one-out up to LEAVE_ONE_OUT_UP_TO points, else stratified
    k-fold (k = MAX_FOLDS, fewer when the smallest class has fewer points), seeded."""
    import numpy as np

    targets = np.asarray(targets)
    count = len(targets)
    if count <= LEAVE_ONE_OUT_UP_TO:
        return np.arange(count)
    smallest = min(np.bincount(targets)[np.unique(targets)])
    folds = max(2, min(MAX_FOLDS, int(smallest)))
    rng = np.random.default_rng(seed)
    fold = np.empty(count, dtype=np.int64)
    offset = 0
    for label in np.unique(targets):
        members = rng.permutation(np.flatnonzero(targets == label))
        # Each class dealt round the folds, carrying on where the last class stopped, so the
        # folds stay the same size as well as stratified.
        fold[members] = (offset + np.arange(len(members))) % folds
        offset += len(members)
    return fold


@dataclass
class CrossValidation:
    fold: object  # int N: the fold each point was held out in
    logits: object  # float32 N×L: each point's logits from the probe fitted without its fold
    probe_accuracy: float
    zero_shot_accuracy: float
    method: str  # "leave-one-out" or "k-fold stratified"


def cross_validate(
    vectors, targets, text_vectors, logit_scale: float, regularisation: float, seed: int = 0
) -> CrossValidation:
    """Out-of-fold logits of every point (fitted without it) and the accuracies of the probe
    and of zero-shot on the same points."""
    import numpy as np

    vectors = np.asarray(vectors, dtype=np.float32)
    targets = np.asarray(targets, dtype=np.int64)
    fold = stratified_folds(targets, seed)
    logits = np.full((len(targets), len(text_vectors)), np.nan, dtype=np.float32)
    for held_out in np.unique(fold):
        test = fold == held_out
        weights, bias = fit_weights(
            vectors[~test], targets[~test], text_vectors, logit_scale, regularisation
        )
        logits[test] = vectors[test] @ weights.T + bias
    zero_shot = vectors @ np.asarray(text_vectors, dtype=np.float32).T
    folds = len(np.unique(fold))
    return CrossValidation(
        fold,
        logits,
        float(np.mean(logits.argmax(axis=1) == targets)),
        float(np.mean(zero_shot.argmax(axis=1) == targets)),
        "leave-one-out" if folds == len(targets) else f"{folds}-fold stratified",
    )
