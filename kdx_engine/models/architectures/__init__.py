"""Built-in architecture families; importing this package registers them all."""
from . import (  # noqa: F401  (each module registers its architectures on import)
    cifar_mobilenetv2,
    cifar_resnet,
    cifar_shufflenet,
    cifar_vgg,
    cifar_wrn,
    demo_nets,
    torchvision_models,
    timm_family,
)
