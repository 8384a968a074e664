"""``kdx zoo build``: train the bundled demo's models on the synthetic shapes and write them out.

The set-up (PRODUCT §8): the Teacher learns from a split whose background cue is independent of the
class; the Base student learns labels only from a small split where the cue agrees with the class
95% of the time; the KD and VAM students learn from those labels and, on a transfer split with an
independent cue, from the Teacher's softened outputs; the KDExplainer is trained in three arms (KD,
no KD, label smoothing) on the same schedule. Everything is seeded and runs with a fixed thread count
and deterministic kernels, so a rebuild reproduces the recorded accuracies.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from kdx_engine.atomic_files import staged_folder
from kdx_engine.data.synthetic import SyntheticConfig, write_image_folder
from kdx_engine.jobs import Progress
from kdx_engine.models.preprocessing import Preprocessing
from kdx_engine.models.registry import get_architecture
from kdx_engine.provenance import package_versions
from kdx_engine.train import (
    CrossEntropy,
    KDExplainerSchedule,
    LabelSmoothing,
    TrainingData,
    TrainSettings,
    VAMLoss,
    VanillaKD,
    accuracy,
    deterministic,
    predict_logits,
    train,
    train_kdexplainer,
    training_data,
)
from kdx_engine.vam import VAM_TEMPERATURE, folded_state_dict
from kdx_engine.vam.demo_arch import VAM_GROUPS

from .demo_data import DEMO_DATA, TEST_SLICE, ZOO_SPLIT_SIZES, balanced_prefix, zoo_splits
from .export import save_onnx, save_state_dict, save_torchscript
from .manifest import ZooManifest, ZooModel, read_zoo, write_zoo

Log = Callable[[str], None]


@dataclass(frozen=True)
class ZooPlan:
    """What ``kdx zoo build`` trains: the data, the epochs of each model, the kept checkpoints."""

    data: SyntheticConfig = DEMO_DATA
    split_sizes: Mapping[str, int] = field(default_factory=lambda: dict(ZOO_SPLIT_SIZES))
    test_slice: int = TEST_SLICE
    teacher_epochs: int = 4
    student_epochs: int = 8
    explainer_soft_epochs: int = 3
    explainer_hard_epochs: int = 2
    checkpoint_epochs: tuple[int, ...] = (0, 1, 2, 4, 8)
    samples_per_class: int = 2
    batch_size: int = 64
    learning_rate: float = 3e-3
    seed: int = 0

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["data"] = self.data.to_json()
        data["split_sizes"] = dict(self.split_sizes)
        data["checkpoint_epochs"] = list(self.checkpoint_epochs)
        return data


FULL_PLAN = ZooPlan()
QUICK_PLAN = ZooPlan(split_sizes={"train_labelled": 48, "transfer": 48, "teacher_train": 48, "test": 48},
                     test_slice=32, teacher_epochs=1, student_epochs=1, explainer_soft_epochs=1,
                     explainer_hard_epochs=1, checkpoint_epochs=(0, 1), samples_per_class=1)


@dataclass
class _Trained:
    """A trained model on its way to disk."""

    name: str
    role: str
    architecture: str
    description: str
    model: nn.Module
    training: dict
    formats: tuple[str, ...] = ("state_dict",)
    checkpoints: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)


def build_zoo(models_dir: str | Path, samples_dir: str | Path, plan: ZooPlan = FULL_PLAN, *,
              threads: int = 1, overwrite: bool = False, log: Log | None = print,
              progress: Progress | None = None) -> ZooManifest:
    """Train every demo model, write them (with ``zoo.json``) to ``models_dir`` and a few sample
    images with masks to ``samples_dir``. Each folder is replaced as a whole once everything is
    written; an existing, non-empty folder is only replaced with ``overwrite``."""
    models_dir, samples_dir = Path(models_dir), Path(samples_dir)
    for folder in (models_dir, samples_dir):
        if folder.exists() and any(folder.iterdir()) and not overwrite:
            raise FileExistsError(f"{folder} is not empty; pass --overwrite to replace it")
    log = log or (lambda message: None)
    start = time.perf_counter()
    with deterministic(threads):
        trained, splits = _train_all(plan, log, progress)
    class_names = plan.data.classes
    slice_split = splits["test"]
    slice_inputs = training_data(slice_split.images[:plan.test_slice], slice_split.labels[:plan.test_slice],
                                 _preset("demo_resnet_small", class_names))
    with staged_folder(models_dir) as staging:
        entries = {t.name: _write_model(staging, t, class_names, slice_inputs) for t in trained}
        manifest = ZooManifest(plan.data, dict(plan.split_sizes), plan.test_slice, entries, {
            "seconds": round(time.perf_counter() - start, 1), "threads": threads,
            "plan": plan.to_json(), "versions": package_versions()})
        write_zoo(staging, manifest)
    with staged_folder(samples_dir) as staging:
        write_image_folder(balanced_prefix(splits["test"], plan.samples_per_class), None, staging)
    for name, entry in entries.items():
        log(f"{name:20s} test-slice accuracy {entry.test_accuracy:.3f}")
    log(f"zoo built in {time.perf_counter() - start:.0f} s: {models_dir}, samples in {samples_dir}")
    return read_zoo(models_dir)


def _train_all(plan: ZooPlan, log: Log, progress: Progress | None):
    splits = zoo_splits(plan.data, plan.split_sizes)
    preset = _preset("demo_resnet_small", plan.data.classes)
    labelled = training_data(splits["train_labelled"].images, splits["train_labelled"].labels, preset)
    transfer = training_data(splits["transfer"].images, None, preset)
    teacher_split = training_data(splits["teacher_train"].images, splits["teacher_train"].labels, preset)
    settings = TrainSettings(epochs=1, batch_size=plan.batch_size, learning_rate=plan.learning_rate,
                             seed=plan.seed)
    student_settings = dataclasses.replace(settings, epochs=plan.student_epochs,
                                           checkpoint_epochs=plan.checkpoint_epochs)
    stages = _StageProgress(progress, plan)

    teacher = _build("demo_resnet_wide", plan.seed)
    run = train(teacher, teacher_split, CrossEntropy(), dataclasses.replace(settings, epochs=plan.teacher_epochs),
                name="teacher", log=log, progress=stages.next("teacher"))
    trained = [_Trained("teacher", "teacher", "demo_resnet_wide",
                        "Teacher: wide ResNet, cross-entropy on teacher_train (cue independent of the class)",
                        teacher, _training_record("cross_entropy", {}, ["teacher_train"], plan.teacher_epochs, run),
                        ("state_dict", "torchscript", "onnx"))]

    distil = TrainingData.concatenate([labelled, transfer])
    distil = distil.with_teacher(predict_logits(teacher, distil.inputs))

    base = _build("demo_resnet_small", plan.seed + 1)
    run = train(base, labelled, CrossEntropy(), student_settings, name="base", log=log,
                progress=stages.next("base"))
    trained.append(_Trained("base", "base", "demo_resnet_small",
                            "Base: small ResNet, cross-entropy on train_labelled only (cue agrees 95%)",
                            base, _training_record("cross_entropy", {}, ["train_labelled"], plan.student_epochs, run),
                            checkpoints=run.checkpoints))

    kd = VanillaKD()
    student = _build("demo_resnet_small", plan.seed + 1)
    run = train(student, distil, kd, student_settings, name="student", log=log, progress=stages.next("student"))
    trained.append(_Trained("student", "student", "demo_resnet_small",
                            "Student: small ResNet, vanilla KD from the Teacher (labels of train_labelled, "
                            "Teacher outputs on train_labelled and transfer)", student,
                            _training_record("vanilla_kd", dataclasses.asdict(kd), ["train_labelled", "transfer"],
                                             plan.student_epochs, run),
                            ("state_dict", "torchscript", "onnx"), run.checkpoints))

    vam_loss = VAMLoss()
    vam_student = _build("demo_resnet_small_vam", plan.seed + 1)
    run = train(vam_student, distil, vam_loss, student_settings, name="student_vam", log=log,
                progress=stages.next("student_vam"))
    vam_record = _training_record("vam", {**dataclasses.asdict(vam_loss), "groups": VAM_GROUPS,
                                          "attention_temperature": VAM_TEMPERATURE},
                                  ["train_labelled", "transfer"], plan.student_epochs, run)
    trained.append(_Trained("student_vam", "vam-student", "demo_resnet_small_vam",
                            "VAM Student with its attention logits (θ): what the VAM views read",
                            vam_student, vam_record, checkpoints=run.checkpoints))
    folded = _build("demo_resnet_small", plan.seed + 1)
    folded.load_state_dict(folded_state_dict(vam_student.state_dict()))
    trained.append(_Trained("student_vam_folded", "vam-student-folded", "demo_resnet_small",
                            "VAM Student folded into plain convolutions (what is deployed; same logits)",
                            folded.eval(), vam_record))

    schedule = KDExplainerSchedule(plan.explainer_soft_epochs, plan.explainer_hard_epochs)
    arms = (("kd", kd, distil, ["train_labelled", "transfer"]),
            ("ce", CrossEntropy(), labelled, ["train_labelled"]),
            ("ls", LabelSmoothing(), labelled, ["train_labelled"]))
    for arm, recipe, data, used in arms:
        explainer = _build("demo_kdexplainer", plan.seed + 2)
        soft, hard = train_kdexplainer(explainer, data, recipe, schedule, settings, name=f"kdexplainer_{arm}",
                                       log=log, progress=stages.next(f"kdexplainer_{arm}"))
        record = _training_record(recipe.name, dataclasses.asdict(recipe), used,
                                  schedule.soft_epochs + schedule.hard_epochs, soft)
        record.update(soft_epochs=schedule.soft_epochs, hard_epochs=schedule.hard_epochs,
                      initial_temperature=schedule.initial_temperature,
                      seconds=round(soft.seconds + hard.seconds, 1), final_loss=round(hard.losses[-1], 4))
        trained.append(_Trained(f"kdexplainer_{arm}", "kdexplainer", "demo_kdexplainer",
                                f"KDExplainer ({arm} arm): soft routing, then the hard tree retrained",
                                explainer, record))
    return trained, splits


class _StageProgress:
    """Splits one Progress across the build's training runs, in proportion to their rough cost."""

    def __init__(self, progress: Progress | None, plan: ZooPlan):
        sizes = plan.split_sizes
        labelled, distil = sizes["train_labelled"], sizes["train_labelled"] + sizes["transfer"]
        explainer_epochs = plan.explainer_soft_epochs + plan.explainer_hard_epochs
        self._costs = {
            "teacher": 3 * plan.teacher_epochs * sizes["teacher_train"],
            "base": plan.student_epochs * labelled,
            "student": plan.student_epochs * distil,
            "student_vam": plan.student_epochs * distil,
            "kdexplainer_kd": 2.4 * explainer_epochs * distil,
            "kdexplainer_ce": 2.4 * explainer_epochs * labelled,
            "kdexplainer_ls": 2.4 * explainer_epochs * labelled,
        }
        self._total = sum(self._costs.values())
        self._done = 0.0
        self._progress = progress

    def next(self, name: str) -> Progress | None:
        if self._progress is None:
            return None
        start, span, outer = self._done / self._total, self._costs[name] / self._total, self._progress
        self._done += self._costs[name]
        return Progress(lambda fraction, message: outer.update(start + span * fraction, message))


def _build(architecture: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return get_architecture(architecture).build(len(DEMO_DATA.classes))


def _preset(architecture: str, class_names) -> Preprocessing:
    return get_architecture(architecture).preset.with_classes(class_names)


def _training_record(recipe: str, settings: dict, data: list[str], epochs: int, run) -> dict:
    return {"recipe": recipe, "settings": settings, "data": data, "epochs": epochs,
            "seconds": round(run.seconds, 1), "final_loss": round(run.losses[-1], 4)}


def _distillation_temperature(training: dict) -> float | None:
    """τ of a KD recipe's settings (VAM nests them under ``kd``), for the sidecar; None without KD."""
    settings = training.get("settings") or {}
    tau = settings.get("tau", (settings.get("kd") or {}).get("tau"))
    return float(tau) if tau is not None else None


def _write_model(folder: Path, trained: _Trained, class_names, slice_data: TrainingData) -> ZooModel:
    preprocessing = dataclasses.replace(_preset(trained.architecture, class_names),
                                        distillation_temperature=_distillation_temperature(trained.training))
    model = trained.model.eval()
    files = {"state_dict": f"{trained.name}.pth"}
    save_state_dict(model.state_dict(), folder / files["state_dict"], preprocessing)
    if "torchscript" in trained.formats:
        files["torchscript"] = f"{trained.name}.ts"
        save_torchscript(model, folder / files["torchscript"], preprocessing)
    if "onnx" in trained.formats:
        files["onnx"] = f"{trained.name}.onnx"
        save_onnx(model, folder / files["onnx"], preprocessing)
    checkpoints = {}
    for epoch, state in trained.checkpoints.items():
        relative = f"checkpoints/{trained.name}/epoch_{epoch:02d}.pth"
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        save_state_dict(state, folder / relative, preprocessing)
        checkpoints[epoch] = relative
    score = accuracy(model, slice_data.inputs, slice_data.labels)
    return ZooModel(trained.name, trained.role, trained.architecture, trained.description, files,
                    round(score, 4), trained.training, checkpoints)
