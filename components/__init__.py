"""TFX components of the MovieLens pipeline (ExampleGen, data gate, Trainer)."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
