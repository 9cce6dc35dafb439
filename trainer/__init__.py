"""The TFRS retrieval model and the Trainer's run_fn."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
