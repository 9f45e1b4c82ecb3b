"""dcctl: the control toolkit for a province's two-tier e-government cloud."""

__version__ = "0.1.0"
