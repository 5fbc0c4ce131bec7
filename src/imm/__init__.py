"""imm: self-improving reasoners with Iterative Model Merging (Yuan et al., arXiv 2503.02103)."""

__version__ = "0.1.0"
