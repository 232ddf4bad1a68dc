"""Write the nested domains' "guest OS": a multiboot image that powers the machine off on an ACPI power-button press.

Usage: python3 l2-poweroff.py OUTPUT

A nested domain (L2) needs no OS for what the lab checks, but without one nothing answers `virsh shutdown`
(an ACPI power-button event), and a guest-initiated power-off is a stop path of its own in libvirt
(QEMU's SHUTDOWN event, not a kill). Booting Linux under TCG inside TCG takes minutes; these 130 bytes take
nothing. QEMU loads them with -kernel (multiboot, "a.out kludge" header) on a `pc` machine (PIIX4), where
they idle on `hlt` and, woken by the BIOS timer, poll PM1 status for the power-button bit; then they write
SLP_EN with sleep type 0 (QEMU's \\_S5) to PM1 control. The PM I/O base comes from the PIIX4 PM function
(00:01.3, PCI config register 0x40), as firmware set it.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

LOAD = 0x100000  # where a multiboot image is loaded
ENTRY = LOAD + 32  # code follows the 32-byte header
IDT = 0x101000  # 256 gates x 8 bytes, in RAM past the image
MAGIC, FLAGS = 0x1BADB002, 0x00010000  # flag 16: the header gives the load addresses (no ELF)


def image() -> bytes:
    code = bytearray()

    def emit(*parts: bytes) -> int:
        for part in parts:
            code.extend(part)
        return ENTRY + len(code)

    def imm32(value: int) -> bytes:
        return struct.pack("<I", value)

    # The stub and IDTR sit at fixed offsets after the code: fill them in once the code length is known.
    stub_at, idtr_at = ENTRY + 0x70, ENTRY + 0x80
    emit(
        b"\xfa",  # cli
        b"\xb8" + imm32(0x80000B40),  # mov eax, PCI config address of 00:01.3 register 0x40 (PMBA)
        b"\x66\xba\xf8\x0c", b"\xef",  # mov dx, 0xcf8; out dx, eax
        b"\x66\xba\xfc\x0c", b"\xed",  # mov dx, 0xcfc; in eax, dx
        b"\x25" + imm32(0xFFC0),  # and eax, 0xffc0: the PM I/O base
        b"\x89\xc3",  # mov ebx, eax
        b"\x8c\xc8",  # mov eax, cs
        b"\xc1\xe0\x10",  # shl eax, 16: gate selector
        b"\x66\xb8" + struct.pack("<H", stub_at & 0xFFFF),  # mov ax, stub (low half)
        b"\xba" + imm32(((stub_at >> 16) << 16) | 0x8E00),  # mov edx, stub (high half) | present 32-bit gate
        b"\xbf" + imm32(IDT),  # mov edi, IDT
        b"\xb9" + imm32(256),  # mov ecx, 256
    )
    fill = emit()
    emit(b"\x89\x07", b"\x89\x57\x04", b"\x83\xc7\x08")  # mov [edi], eax; mov [edi+4], edx; add edi, 8
    after = emit() + 2
    emit(b"\xe2" + struct.pack("<b", fill - after))  # loop fill
    emit(
        b"\x0f\x01\x1d" + imm32(idtr_at),  # lidt [idtr]
        b"\x8d\x53\x02", b"\x66\xb8\x00\x01", b"\x66\xef",  # PM1_EN (base+2) = power button enable
    )
    wait = emit()
    emit(
        b"\xfb", b"\xf4",  # sti; hlt (until the BIOS timer or the SCI)
        b"\x89\xda", b"\x66\xed",  # mov edx, ebx; in ax, dx: PM1_STS
        b"\x66\xa9\x00\x01",  # test ax, 0x100: power button pressed?
    )
    after = emit() + 2
    emit(b"\x74" + struct.pack("<b", wait - after))  # jz wait
    emit(
        b"\x8d\x53\x04", b"\x66\xb8\x00\x20", b"\x66\xef",  # PM1_CNT (base+4) = SLP_EN | sleep type 0
        b"\xfa", b"\xf4", b"\xeb\xfc",  # cli; hlt; jmp back to cli (if the power-off is late)
    )
    assert ENTRY + len(code) <= stub_at, "code overlaps the interrupt stub"
    code.extend(b"\x90" * (stub_at - ENTRY - len(code)))
    # Every interrupt: end it at both PICs (the timer is IRQ 0, the SCI IRQ 9), return.
    code.extend(b"\x50\xb0\x20\xe6\xa0\xe6\x20\x58\xcf")  # push eax; mov al,0x20; out 0xa0,al; out 0x20,al; pop; iret
    code.extend(b"\x90" * (idtr_at - ENTRY - len(code)))
    code.extend(struct.pack("<HI", 256 * 8 - 1, IDT))
    header = struct.pack("<8I", MAGIC, FLAGS, (-(MAGIC + FLAGS)) & 0xFFFFFFFF, LOAD, LOAD, 0, 0, ENTRY)
    return header + bytes(code)


if __name__ == "__main__":
    out = Path(sys.argv[1])
    out.write_bytes(image())
    out.chmod(0o644)
