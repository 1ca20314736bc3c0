"""The Stoker agent: the one process Stoker runs on a GPU host (ComfyUI, models, authenticated proxy)."""
