"""Sentiment data sets in their published layouts, splits, transforms and a skip-bad Dataset.

index = load_index(root, split="train")          # layout detected from the folder
data = ImageDataset(index, train_transform(InputContract(224)), with_maps=False)
loader = DataLoader(data, batch_size=32, collate_fn=collate_skip_bad)
"""

from wscnet.data.dataset import ImageDataset, collate_skip_bad, open_map, open_rgb
from wscnet.data.index import SPLITS, DatasetIndex, Sample
from wscnet.data.layouts import LAYOUTS, detect_layout, load_index
from wscnet.data.transforms import AUGMENTS, eval_transform, ten_crop_transform, train_transform, views_transform

__all__ = [
    "LAYOUTS",
    "SPLITS",
    "DatasetIndex",
    "Sample",
    "ImageDataset",
    "collate_skip_bad",
    "detect_layout",
    "load_index",
    "train_transform",
    "eval_transform",
    "ten_crop_transform",
    "views_transform",
    "open_rgb",
    "open_map",
    "AUGMENTS",
]
