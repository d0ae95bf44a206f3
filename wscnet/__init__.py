"""WSCNet: weakly supervised coupled networks for visual sentiment (She et al.).

Importing the package is cheap (no torch); import the submodules you need.
"""

__version__ = "0.1.0"
