"""Experiments of CLIP image-text studies, as commands: `pixgrep rank` (captions ranked against one
image) and `pixgrep probe` (the best image for each level of detail of a description)."""
