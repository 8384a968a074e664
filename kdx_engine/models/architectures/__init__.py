"""Built-in architecture families; importing this package registers them all."""
from . import (  # noqa: F401  (each module registers its architectures on import)
    cifar_densenet,
    cifar_mobilenetv2,
    cifar_preresnet,
    cifar_resnet,
    cifar_resnet_option_a,
    cifar_shufflenet,
    cifar_vgg,
    cifar_wrn,
    demo_nets,
    efficientnet_lite,
    imagenet_mobilenetv1,
    tiny_imagenet_mobilenetv2,
    torchdistill_wrn,
    torchvision_models,
    timm_family,
)
