"""The PREDEFINED split: torchvision's ResNet-50 (adapted to 32x32 on CIFAR) and the 12-cell ViT."""
from __future__ import annotations

from torch import nn

from .genotype import Architecture, Genotype
from .network import Network

__all__ = ["VIT_GENOTYPE", "VIT_ARCH", "resnet50", "vit", "predefined_nets"]

# A transformer layer per normal cell; the two reduction cells only average-pool (ViT nets never stride).
VIT_GENOTYPE = Genotype(normal=[("none", 0), ("msa", 1)], normal_concat=[2],
                        reduce=[("none", 0), ("avg_pool_3x3", 1)], reduce_concat=[2])
VIT_ARCH = Architecture(VIT_GENOTYPE, n_cells=12, preproc=False, C_mult=1, glob_avg=True, fc_layers=1)


def resnet50(num_classes: int = 10, *, imagenet: bool = False) -> nn.Module:
    """torchvision ResNet-50; on CIFAR its stem becomes a 3x3 stride-1 conv without max-pool."""
    from torchvision.models import resnet50 as tv_resnet50

    net = tv_resnet50(weights=None, num_classes=num_classes)
    if not imagenet:
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    return net


def vit(num_classes: int = 10, *, imagenet: bool = False, **kwargs) -> Network:
    """The predefined ViT: C=128, 12 cells, no input adapters, constant width."""
    return Network(VIT_ARCH, 128, num_classes, imagenet=imagenet, **kwargs)


def predefined_nets(num_classes: int = 10, *, imagenet: bool = False) -> dict[str, nn.Module]:
    """Index 0 = ResNet-50, index 1 = ViT, as in the reference's PREDEFINED split."""
    return {"resnet50": resnet50(num_classes, imagenet=imagenet), "vit": vit(num_classes, imagenet=imagenet)}
