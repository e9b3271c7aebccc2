"""Input: frame readers (videos, TIFF stacks, image folders) and vendor exports."""

from nta.io.frames import (
    IMAGE_EXTENSIONS,
    TIFF_EXTENSIONS,
    VIDEO_EXTENSIONS,
    FrameSource,
    ImageFolderSource,
    TiffSource,
    TruncatedVideoWarning,
    VideoSource,
    natural_sort_key,
    open_frames,
    to_grey,
)

__all__ = [
    "FrameSource",
    "VideoSource",
    "TiffSource",
    "ImageFolderSource",
    "TruncatedVideoWarning",
    "open_frames",
    "natural_sort_key",
    "to_grey",
    "VIDEO_EXTENSIONS",
    "TIFF_EXTENSIONS",
    "IMAGE_EXTENSIONS",
]
