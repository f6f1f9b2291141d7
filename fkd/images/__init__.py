"""Images: which images a store describes (sources), and their pixels (decoding).

Neither half needs torch.

- Sources: ``scan_source`` (``scan.py``) turns DATA (an ImageFolder tree, a flat
  folder of images or a text/CSV list of files; ``folder_scan.py``,
  ``file_list.py``, ``file_list_parsing.py``) into an ``ImageSource``
  (``image_source.py``): a root folder plus a ``Manifest`` of relative paths, byte
  sizes and targets in a sorted, stable order.
- Decoding: ``decode_image`` (``decode.py``) turns one file into an RGB ``uint8``
  ``HxWx3`` C-contiguous, writable array, or raises ``ImageDecodeError``
  (``limits.py``) with a short reason fit for the label store's per-image error
  field.  JPEGs go through simplejpeg (``simplejpeg_decode.py``) when it decodes
  them exactly as PIL would, everything else through PIL (``pil_decode.py``); EXIF
  orientation is applied (``exif.py``).  ``decode.py`` documents every choice.
  ``decode_for_crops`` decodes a JPEG at 1/2, 1/4 or 1/8 of its size when a visit's
  crop boxes allow it (``reduction.py``).
"""

from fkd.images.decode import (
    decode_for_crops,
    decode_image,
    decode_image_bytes,
    decode_or_reason,
)
from fkd.images.exif import jpeg_exif_orientation
from fkd.images.file_list import scan_file_list
from fkd.images.file_list_parsing import parse_file_list
from fkd.images.folder_scan import scan_image_folder
from fkd.images.image_source import (
    IMAGE_EXTENSIONS,
    ImageSource,
    ImageSourceError,
    image_folder_root,
    source_root,
)
from fkd.images.limits import DEFAULT_MAX_PIXELS, MAX_REASON_BYTES, ImageDecodeError, short_reason
from fkd.images.pil_decode import PIL_FORMATS
from fkd.images.reduction import REDUCTION_MARGIN, REDUCTIONS, largest_reduction
from fkd.images.scan import scan_source
from fkd.images.simplejpeg_decode import JPEG_MAGIC, SIMPLEJPEG, SIMPLEJPEG_COLORSPACES

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "JPEG_MAGIC",
    "MAX_REASON_BYTES",
    "PIL_FORMATS",
    "REDUCTIONS",
    "REDUCTION_MARGIN",
    "SIMPLEJPEG",
    "SIMPLEJPEG_COLORSPACES",
    "ImageDecodeError",
    "ImageSource",
    "ImageSourceError",
    "decode_for_crops",
    "decode_image",
    "decode_image_bytes",
    "decode_or_reason",
    "image_folder_root",
    "jpeg_exif_orientation",
    "largest_reduction",
    "parse_file_list",
    "scan_file_list",
    "scan_image_folder",
    "scan_source",
    "short_reason",
    "source_root",
]
