# pngread.py - decodes an 8-bit RGB PNG with the standard library only (zlib), for the CLI
# tests that check ember plot's images: every chunk's CRC, all five row filters.
import struct
import sys
import zlib


def read_png(path):
    """(width, height, rows): rows[y] is a bytearray of width * 3 bytes, top row first."""
    b = open(path, 'rb').read()
    if b[:8] != b'\x89PNG\r\n\x1a\n': sys.exit('%s: not a PNG signature' % path)
    pos, idat, ihdr, end = 8, b'', None, False
    while pos + 12 <= len(b):
        n, = struct.unpack('>I', b[pos:pos + 4])
        kind, data = b[pos + 4:pos + 8], b[pos + 8:pos + 8 + n]
        crc, = struct.unpack('>I', b[pos + 8 + n:pos + 12 + n])
        if zlib.crc32(kind + data) & 0xffffffff != crc: sys.exit('%s: bad CRC in %r' % (path, kind))
        if kind == b'IHDR': ihdr = struct.unpack('>IIBBBBB', data)
        elif kind == b'IDAT': idat += data
        elif kind == b'IEND': end = True
        pos += 12 + n
    if not ihdr or not end or pos != len(b): sys.exit('%s: chunks incomplete' % path)
    w, h, depth, ctype, _, _, interlace = ihdr
    if (depth, ctype, interlace) != (8, 2, 0): sys.exit('%s: not 8-bit RGB' % path)
    raw, stride, rows, p = zlib.decompress(idat), w * 3, [], 0
    prev = bytearray(stride)
    for _ in range(h):
        f, line = raw[p], bytearray(raw[p + 1:p + 1 + stride])
        p += 1 + stride
        for i in range(stride):
            a = line[i - 3] if i >= 3 else 0
            up, c = prev[i], (prev[i - 3] if i >= 3 else 0)
            if f == 1: line[i] = (line[i] + a) & 255
            elif f == 2: line[i] = (line[i] + up) & 255
            elif f == 3: line[i] = (line[i] + (a + up) // 2) & 255
            elif f == 4:
                pa, pb, pc = abs(up - c), abs(a - c), abs(a + up - 2 * c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else up if pb <= pc else c)) & 255
            elif f != 0: sys.exit('%s: filter %d' % (path, f))
        rows.append(line)
        prev = line
    if p != len(raw): sys.exit('%s: %d bytes of pixel data, expected %d' % (path, len(raw), p))
    return w, h, rows
