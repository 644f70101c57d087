"""rote: can a network learn its training set by rote?"""

__version__ = "0.1.0"
