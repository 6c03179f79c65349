"""The pure core: prompts, sizes, images, geometry, rendering, caches, files and errors.

Depends on numpy, OpenCV, PIL and pycocotools only: no torch, no gradio (a test enforces it).
"""
