"""The tests' small checkpoints and image folders: ``wscnet.tiny_model``, under the names the
tests import (benchmarks and other code import ``wscnet.tiny_model`` itself)."""

from wscnet.tiny_model import (  # noqa: F401
    CLASS_COLOURS,
    make_trained_checkpoint,
    synthetic_batches,
    synthetic_image,
    write_image_folder,
)
