"""Dark knowledge: outputs softened by a temperature, KL and entropy under it, similar classes.

``p_τ = softmax(z/τ)`` for logits z (Hinton et al. 2015). τ = 1 is the model's own softmax and
τ → ∞ tends to the uniform distribution. Probabilities at τ = 1 soften exactly as their logits do
(``log p = z − logsumexp(z)``; the constant cancels in the softmax), so a view that holds only
probabilities can soften them too. KL and entropy are in nats, computed in float64.

Over a set of images: the mean KL(T‖S) (and KL(T‖B)) for each τ with a 95% **normal interval of
the mean** (mean ± z·s/√n; the delete-one jackknife of a mean gives exactly this standard error),
the classes that carry the most softened Teacher mass besides the true class, and how often the
Teacher's top-1 class is the Student's top-1 / among its top-5, with Wilson score intervals.
Pure numpy: this module sits in the bottom layers of the engine.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from statistics import NormalDist

import numpy as np

from kdx_engine.values import Value

TAU_MIN, TAU_MAX = 1.0, 20.0
DEFAULT_TAU = 4.0
LEVEL = 0.95
CURVE_TEMPERATURES = tuple(float(t) for t in np.round(np.geomspace(TAU_MIN, TAU_MAX, 13), 4))
MEAN_INTERVAL = "normal interval of the mean (mean ± z·s/√n; equal to the delete-one jackknife of the mean)"
PROPORTION_INTERVAL = "Wilson score interval"
TINY = 1e-300  # a probability of exactly 0 (underflow) is read as this when taking its logarithm


def _checked_temperature(tau: float) -> float:
    tau = float(tau)
    if not math.isfinite(tau) or tau <= 0:
        raise ValueError(f"temperature τ must be a positive finite number, got {tau!r}")
    return tau


def _rows(values, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim not in (1, 2) or array.shape[-1] < 2:
        raise ValueError(f"{what} must be a vector or an n×K array with K ≥ 2 classes, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} hold non-finite values")
    return array


def softened(logits, tau: float) -> np.ndarray:
    """``softmax(z/τ)`` along the last axis (a vector or one row per image), float64."""
    tau = _checked_temperature(tau)
    z = _rows(logits, "logits") / tau
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def softened_probabilities(probabilities, tau: float) -> np.ndarray:
    """The same as ``softened(z, τ)`` from the τ = 1 probabilities ``softmax(z)`` instead of z."""
    p = _rows(probabilities, "probabilities")
    if (p < 0).any():
        raise ValueError("probabilities must not be negative")
    return softened(np.log(np.maximum(p, TINY)), tau)


def kl_divergence(p, q) -> np.ndarray | float:
    """KL(p‖q) = Σ p log(p/q) in nats, per row (0·log 0 = 0; q floored at 1e-300)."""
    p, q = _rows(p, "p"), _rows(q, "q")
    if p.shape != q.shape:
        raise ValueError(f"p and q differ in shape: {p.shape} vs {q.shape}")
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(np.maximum(p, TINY)) - np.log(np.maximum(q, TINY))), 0.0)
    result = np.maximum(terms.sum(axis=-1), 0.0)
    return float(result) if result.ndim == 0 else result


def entropy(p) -> np.ndarray | float:
    """H(p) = −Σ p log p in nats, per row."""
    p = _rows(p, "p")
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(np.maximum(p, TINY)), 0.0)
    result = terms.sum(axis=-1)
    return float(result) if result.ndim == 0 else result


@dataclass(frozen=True)
class SoftenedOutputs:
    """One image's outputs at temperature τ: each model's softened distribution and entropy, and
    KL(T‖S), KL(T‖B) where those models are present (None otherwise)."""

    tau: float
    distributions: dict[str, np.ndarray]
    entropies: dict[str, float]
    kl_teacher_student: float | None
    kl_teacher_base: float | None


def soften_image(probabilities: dict[str, np.ndarray], tau: float) -> SoftenedOutputs:
    """Soften one image's τ = 1 probabilities (role → K-vector) to τ, with entropies and KLs."""
    distributions = {role: softened_probabilities(p, tau) for role, p in probabilities.items()}
    entropies = {role: float(entropy(p)) for role, p in distributions.items()}

    def kl(a, b):
        if a in distributions and b in distributions and distributions[a].shape == distributions[b].shape:
            return float(kl_divergence(distributions[a], distributions[b]))
        return None

    return SoftenedOutputs(float(tau), distributions, entropies, kl("teacher", "student"), kl("teacher", "base"))


def mean_interval(values, level: float = LEVEL, bounds: tuple[float, float] = (0.0, math.inf)) -> Value:
    """The mean of ``values`` with its normal interval (see ``MEAN_INTERVAL``), clipped to ``bounds``."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return Value.undefined("no values")
    mean = float(x.mean())
    if x.size < 2:
        return Value(mean, reason="interval undefined: one value")
    half = NormalDist().inv_cdf(0.5 + level / 2) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return Value(mean, max(mean - half, bounds[0]), min(mean + half, bounds[1]))


def proportion_interval(successes: int, total: int, level: float = LEVEL) -> Value:
    """``successes/total`` with its Wilson score interval (defined also at 0 and 1)."""
    if total <= 0:
        return Value.undefined("no images")
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return Value(p, max(centre - half, 0.0), min(centre + half, 1.0))


@dataclass(frozen=True)
class CurvePoint:
    """Mean KL(T‖M) over the images at one temperature, with its interval."""

    tau: float
    kl: Value


def kl_curve(teacher_logits, other_logits, temperatures=CURVE_TEMPERATURES, level: float = LEVEL) -> list[CurvePoint]:
    """Mean KL(T‖M) over the images (rows) at each temperature, with a normal interval of the mean."""
    teacher, other = _rows(teacher_logits, "Teacher logits"), _rows(other_logits, "logits")
    if teacher.ndim != 2 or teacher.shape != other.shape:
        raise ValueError(f"logits must be n×K arrays of the same shape, got {teacher.shape} and {other.shape}")
    return [CurvePoint(float(t), mean_interval(kl_divergence(softened(teacher, t), softened(other, t)), level))
            for t in temperatures]


@dataclass(frozen=True)
class SimilarClass:
    """Among images of ``true_class``, the mean softened Teacher probability of ``other_class``, and
    the same mean for the other models (``model_mass``: role → Value), to see who picked it up."""

    true_class: int
    other_class: int
    mass: Value
    n: int
    model_mass: dict[str, Value] = field(default_factory=dict)


def similar_classes(teacher_logits, labels, tau: float = DEFAULT_TAU, per_class: int = 2,
                    level: float = LEVEL, others: dict | None = None) -> list[SimilarClass]:
    """For each true class, the ``per_class`` other classes with the most mean softened Teacher mass
    (the dark knowledge the Student is meant to pick up), largest first within each class, with the
    mean mass ``others`` (role → n×K logits) give the same class; images without a label are left out."""
    p = softened(_rows(teacher_logits, "Teacher logits"), tau)
    softened_others = {role: softened(_rows(z, f"{role} logits"), tau) for role, z in (others or {}).items()}
    labels = np.asarray([-1 if label is None else int(label) for label in labels])
    if p.ndim != 2 or labels.shape[0] != p.shape[0]:
        raise ValueError(f"{labels.shape[0]} labels for {p.shape[0]} rows of logits")
    if any(q.shape != p.shape for q in softened_others.values()):
        raise ValueError("every model's logits must have the Teacher's shape")
    rows = []
    for c in sorted(set(labels[labels >= 0].tolist())):
        if c >= p.shape[1]:
            raise ValueError(f"label {c} is outside the model's {p.shape[1]} classes")
        chosen = labels == c
        means = p[chosen].mean(axis=0)
        means[c] = -np.inf
        for other in np.argsort(-means, kind="stable")[:per_class]:
            model_mass = {role: mean_interval(q[chosen, other], level, (0.0, 1.0))
                          for role, q in softened_others.items()}
            rows.append(SimilarClass(c, int(other), mean_interval(p[chosen, other], level, (0.0, 1.0)),
                                     int(chosen.sum()), model_mass))
    return rows


def top_k_agreement(teacher_logits, student_logits, k: int = 1, level: float = LEVEL) -> Value:
    """Share of images whose Teacher top-1 class is among the Student's top-k (k = 1: the same top-1),
    with a Wilson interval."""
    teacher, student = _rows(teacher_logits, "Teacher logits"), _rows(student_logits, "Student logits")
    if teacher.ndim != 2 or teacher.shape != student.shape:
        raise ValueError(f"logits must be n×K arrays of the same shape, got {teacher.shape} and {student.shape}")
    k = min(int(k), teacher.shape[1])
    best = teacher.argmax(axis=1)
    # T's top-1 is in S's top-k when fewer than k classes score strictly higher in S (ties count for T)
    higher = (student > student[np.arange(student.shape[0]), best][:, None]).sum(axis=1)
    hits = int((higher < k).sum())
    return proportion_interval(hits, teacher.shape[0], level)


@dataclass(frozen=True)
class DarkKnowledge:
    """Dark knowledge over a set of images: KL(T‖S) and KL(T‖B) against τ, the similar classes at
    ``tau``, and T–S (T–B) top-1 / top-k agreement. Saves as JSON (undefined numbers as None)."""

    n: int
    tau: float
    curves: dict[str, list[CurvePoint]]  # "student" / "base" → KL(T‖M) per temperature
    similar: list[SimilarClass]
    agreement: dict[str, dict[str, Value]]  # "student" / "base" → {"top1": …, "topk": …}
    top_k: int  # k of "topk": 5, or the class count when there are fewer classes
    class_names: tuple[str, ...] = ()
    level: float = LEVEL
    interval: dict = field(default_factory=lambda: {"kl": MEAN_INTERVAL, "agreement": PROPORTION_INTERVAL,
                                                    "similar_classes": MEAN_INTERVAL})

    def kl_at(self, role: str, tau: float) -> Value | None:
        """KL(T‖role) at the curve's temperature nearest ``tau`` (None without that model)."""
        points = self.curves.get(role)
        if not points:
            return None
        return min(points, key=lambda point: abs(math.log(point.tau / tau))).kl

    def to_json(self) -> dict:
        return json_ready(asdict(self))


def dark_knowledge(logits: dict[str, np.ndarray], labels, tau: float = DEFAULT_TAU,
                   temperatures=CURVE_TEMPERATURES, class_names=(), top_k: int = 5,
                   level: float = LEVEL) -> DarkKnowledge:
    """Dark knowledge of ``logits`` (role → n×K, "teacher" required, "student"/"base" optional)."""
    tau = _checked_temperature(tau)
    if "teacher" not in logits:
        raise ValueError("dark knowledge needs the Teacher's logits")
    temperatures = sorted({float(t) for t in temperatures} | {tau})
    teacher = logits["teacher"]
    top_k = min(int(top_k), int(np.shape(teacher)[-1]))
    others = {role: logits[role] for role in ("student", "base") if role in logits}
    curves = {role: kl_curve(teacher, other, temperatures, level) for role, other in others.items()}
    agreement = {role: {"top1": top_k_agreement(teacher, other, 1, level),
                        "topk": top_k_agreement(teacher, other, top_k, level)}
                 for role, other in others.items()}
    similar = similar_classes(teacher, labels, tau, level=level, others=others)
    return DarkKnowledge(int(np.shape(teacher)[0]), tau, curves, similar, agreement, top_k,
                         tuple(class_names), level)


def json_ready(data):
    """``data`` with non-finite floats as None and arrays as lists (strict JSON)."""
    if isinstance(data, dict):
        return {str(key): json_ready(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_ready(value) for value in data]
    if isinstance(data, np.ndarray):
        return json_ready(data.tolist())
    if isinstance(data, (float, np.floating)):
        return float(data) if math.isfinite(data) else None
    if isinstance(data, np.integer):
        return int(data)
    return data
