"""resnet-bench: reproduce the ResNet V1 (He et al. 2015) and V2 (He et al. 2016) CIFAR results."""

__version__ = "0.1.0"
