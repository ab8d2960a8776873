"""Read the DT_NEEDED entries of an ELF shared object without loading it.

The file is memory-mapped: vLLM's extensions are hundreds of MB and only the
headers and the dynamic section are touched.

vLLM's compiled extensions name the CUDA runtime they were built against
(``libcudart.so.12`` or ``.13``); reading that tells a CUDA-12 vLLM beside a
CUDA-13 torch apart before the import fails.  pyelftools would do it, but this
is forty lines and keeps the doctor free of dependencies.

The section headers give two more answers: the glibc symbol versions an
object needs (a wheel's manylinux tag can understate them, vllm#41103), and
its undefined and defined dynamic symbols (an extension built against another
torch names C++ symbols that torch no longer exports).
"""

from __future__ import annotations

import mmap
import re
import struct

from packaging.version import Version

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


SHT_DYNSYM, SHT_GNU_VERNEED = 11, 0x6FFFFFFE
GLIBC_VERSION = re.compile(r"GLIBC_(\d+\.\d+(?:\.\d+)?)")


def glibc_needed(path: str) -> str | None:
    """The newest GLIBC_x.y symbol version the object asks of libc (its GNU version-needs section): what the
    dynamic loader checks, and what a wheel's manylinux tag only claims ("GLIBC_2.34 not found")."""
    names = _read(path, _verneed_names) or []
    versions = [Version(m.group(1)) for m in map(GLIBC_VERSION.fullmatch, names) if m]
    return str(max(versions)) if versions else None


def dynamic_symbols(path: str) -> tuple[set[str], set[str]]:
    """(undefined, defined) names of the object's dynamic symbol table; empty sets when it is not ELF."""
    return _read(path, _dynsym) or (set(), set())


def _read(path: str, parse):
    try:
        with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return parse(data) if data[:4] == b"\x7fELF" else None
    except (OSError, ValueError, struct.error, IndexError):
        return None


def _sections(data: mmap.mmap) -> list[tuple[int, int, int, int, int]]:
    """(type, offset, size, link, info) of every section header."""
    is64, order = data[4] == 2, "<" if data[5] == 1 else ">"
    if is64:
        shoff, = struct.unpack_from(f"{order}Q", data, 0x28)
        shentsize, shnum = struct.unpack_from(f"{order}HH", data, 0x3A)
        layout = f"{order}IIQQQQII"
    else:
        shoff, = struct.unpack_from(f"{order}I", data, 0x20)
        shentsize, shnum = struct.unpack_from(f"{order}HH", data, 0x2E)
        layout = f"{order}IIIIIIII"
    headers = []
    for i in range(shnum):
        _, sh_type, _, _, sh_offset, sh_size, sh_link, sh_info = struct.unpack_from(layout, data, shoff + i * shentsize)[:8]
        headers.append((sh_type, sh_offset, sh_size, sh_link, sh_info))
    return headers


def _string(data: mmap.mmap, table: tuple, offset: int) -> str:
    start = table[1] + offset
    return data[start : data.find(b"\0", start)].decode("utf-8", "replace")


def _verneed_names(data: mmap.mmap) -> list[str]:
    sections = _sections(data)
    order = "<" if data[5] == 1 else ">"
    names = []
    for sh_type, offset, _, link, count in sections:
        if sh_type != SHT_GNU_VERNEED:
            continue
        strings = sections[link]
        for _ in range(count):  # Elf_Verneed: version, cnt, file, aux, next; Elf_Vernaux: hash, flags, other, name, next
            _, aux_count, _, aux, following = struct.unpack_from(f"{order}HHIII", data, offset)
            entry = offset + aux
            for _ in range(aux_count):
                _, _, _, name, step = struct.unpack_from(f"{order}IHHII", data, entry)
                names.append(_string(data, strings, name))
                entry += step
            offset += following
    return names


def _dynsym(data: mmap.mmap) -> tuple[set[str], set[str]]:
    sections = _sections(data)
    is64, order = data[4] == 2, "<" if data[5] == 1 else ">"
    # Elf64_Sym: name I, info B, other B, shndx H, value Q, size Q; Elf32_Sym: name I, value I, size I, info B, other B, shndx H
    layout, size = (f"{order}IBBHQQ", 24) if is64 else (f"{order}IIIBBH", 16)
    undefined, defined = set(), set()
    for sh_type, offset, length, link, _ in sections:
        if sh_type != SHT_DYNSYM:
            continue
        strings = sections[link]
        for entry in struct.iter_unpack(layout, data[offset : offset + length - length % size]):
            name, shndx = entry[0], (entry[3] if is64 else entry[5])
            if name:
                (undefined if shndx == 0 else defined).add(_string(data, strings, name))
    return undefined, defined
