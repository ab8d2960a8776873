"""Read the DT_NEEDED entries of an ELF shared object without loading it.

The file is memory-mapped: vLLM's extensions are hundreds of MB and only the
headers and the dynamic section are touched.

vLLM's compiled extensions name the CUDA runtime they were built against
(``libcudart.so.12`` or ``.13``); reading that tells a CUDA-12 vLLM beside a
CUDA-13 torch apart before the import fails.  pyelftools would do it, but this
is forty lines and keeps the doctor free of dependencies.
"""

from __future__ import annotations

import mmap
import struct

DT_NEEDED, DT_STRTAB = 1, 5
PT_DYNAMIC, PT_LOAD = 2, 1


def needed_libraries(path: str) -> list[str]:
    """The DT_NEEDED names of a 64- or 32-bit ELF file; [] when it is not ELF."""
    try:
        with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _needed(data) if data[:4] == b"\x7fELF" else []
    except (OSError, ValueError, struct.error):  # unreadable, empty or truncated
        return []


def _needed(data: mmap.mmap) -> list[str]:
    is64 = data[4] == 2
    order = "<" if data[5] == 1 else ">"
    word, addr = ("Q", "Q") if is64 else ("I", "I")
    header = struct.unpack_from(f"{order}16xHHI{addr}{addr}{addr}IHHH", data, 0)
    phoff, phentsize, phnum = header[4], header[8], header[9]
    phdr = f"{order}IIQQQQQQ" if is64 else f"{order}IIIIIIII"
    segments = []
    for i in range(phnum):
        fields = struct.unpack_from(phdr, data, phoff + i * phentsize)
        if is64:
            p_type, _, p_offset, p_vaddr, _, p_filesz = fields[:6]
        else:
            p_type, p_offset, p_vaddr, _, p_filesz = fields[:5]
        segments.append((p_type, p_offset, p_vaddr, p_filesz))
    dynamic = next((s for s in segments if s[0] == PT_DYNAMIC), None)
    if dynamic is None:
        return []
    entry = struct.Struct(f"{order}{word}{word}")
    needed, strtab_vaddr = [], None
    for offset in range(dynamic[1], dynamic[1] + dynamic[3], entry.size):
        tag, value = entry.unpack_from(data, offset)
        if tag == 0:
            break
        if tag == DT_NEEDED:
            needed.append(value)
        elif tag == DT_STRTAB:
            strtab_vaddr = value
    strtab = _file_offset(segments, strtab_vaddr)
    if strtab is None:
        return []
    return [data[strtab + n : data.find(b"\0", strtab + n)].decode() for n in needed]


def _file_offset(segments, vaddr: int | None) -> int | None:
    """Map a virtual address to a file offset through the PT_LOAD segments."""
    if vaddr is None:
        return None
    for p_type, p_offset, p_vaddr, p_filesz in segments:
        if p_type == PT_LOAD and p_vaddr <= vaddr < p_vaddr + p_filesz:
            return vaddr - p_vaddr + p_offset
    return vaddr
