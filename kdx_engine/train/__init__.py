"""Training recipes (METHODS §7–§8) and a small deterministic loop: what builds the demo zoo."""
from .cross_entropy import CrossEntropy, labelled_cross_entropy
from .kdexplainer_stages import KDExplainerSchedule, train_kdexplainer
from .label_smoothing import LabelSmoothing
from .loop import TrainingRun, TrainSettings, accuracy, deterministic, predict_logits, train
from .tensors import UNLABELLED, Batch, TrainingData, model_inputs, training_data
from .vam_loss import VAMLoss
from .vanilla_kd import VanillaKD, distillation_divergence, vanilla_kd_loss

__all__ = [
    "UNLABELLED", "Batch", "CrossEntropy", "KDExplainerSchedule", "LabelSmoothing", "TrainSettings",
    "TrainingData", "TrainingRun", "VAMLoss", "VanillaKD", "accuracy", "deterministic",
    "distillation_divergence", "labelled_cross_entropy", "model_inputs", "predict_logits", "train",
    "train_kdexplainer", "training_data", "vanilla_kd_loss",
]
