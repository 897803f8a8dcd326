"""resnet-bench: reproduce the ResNet V1 (He et al. 2015) and V2 (He et al. 2016) results: the
CIFAR experiments, and the ImageNet nets of V1 Table 1 and V2 Table 5."""

__version__ = "0.1.0"
