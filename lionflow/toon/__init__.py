"""TOON (Token-Oriented Object Notation, spec v4.0): compact data for prompts, and replies read
while they stream::

    from lionflow import toon

    text = toon.encode(data, indent=2, delimiter=",")   # "," "|" or "\\t"
    value = toon.decode(text, indent=2, strict=True)     # ToonDecodeError(line, column) on bad input
    partial = toon.PartialTOON(indent=2)
    partial.feed(piece)                                  # as the reply streams
    partial.value                                        # what the text so far says, never retracted
    partial.close()                                      # == toon.decode(whole text)

See docs/toon.md.
"""

from lionflow.errors import ToonDecodeError
from lionflow.toon._decode import decode
from lionflow.toon._encode import encode
from lionflow.toon._partial import PartialTOON

__all__ = ["PartialTOON", "ToonDecodeError", "decode", "encode"]
