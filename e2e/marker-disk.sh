# Sourced by the E2E scripts. write_marker_disk PATH [SIZE]: a raw disk (1M unless SIZE) whose boot sector
# writes KILN-DISK-BOOTED to COM1 (port 0x3f8), then writes to QEMU's isa-debug-exit port 0xf4, which ends the VM
# (exit status 3). Hand-assembled 16-bit code at 0x7c00:
#   cld; xor ax,ax; mov ds,ax; mov si,msg; mov dx,0x3f8
#   next: lodsb; test al,al; jz done; out dx,al; jmp next
#   done: mov al,1; out 0xf4,al; hlt; jmp $-1
#   msg:  "KILN-DISK-BOOTED\r\n", 0
write_marker_disk() {
    truncate -s "${2:-1M}" "$1"
    {
        printf '\xfc\x31\xc0\x8e\xd8\xbe\x1a\x7c\xba\xf8\x03\xac\x84\xc0\x74\x03\xee\xeb\xf8\xb0\x01\xe6\xf4\xf4\xeb\xfd'
        printf 'KILN-DISK-BOOTED\r\n\x00'
    } | dd of="$1" conv=notrunc status=none
    printf '\x55\xaa' | dd of="$1" bs=1 seek=510 conv=notrunc status=none
}
