"""HiFaceGAN networks."""

from .discriminator import MultiscaleDiscriminator
from .generator import HiFaceGANGenerator, LIPSPADEGenerator, build_generator
from .vgg import VGG19Features

__all__ = [
    "HiFaceGANGenerator",
    "LIPSPADEGenerator",
    "MultiscaleDiscriminator",
    "VGG19Features",
    "build_generator",
]
