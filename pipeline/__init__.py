"""Pipeline definition, configuration, runners and the command line."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
