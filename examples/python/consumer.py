#!/usr/bin/python3
"""Read video frames from a shmringsink into NumPy arrays.

    shmringsrc socket-path=PATH ! videoconvert ! video/x-raw,format=RGBA ! appsink

Each frame becomes a ``height x width x channels`` ``uint8`` array of its own:
it is copied once out of the shared-memory slot, so the slot goes back to the
sink at once and the array lives as long as you keep it. ``videoconvert`` passes
frames that already have the wanted format through untouched.

Run with Debian's Python (``/usr/bin/python3``; packages python3-gi,
gir1.2-gstreamer-1.0, gir1.2-gst-plugins-base-1.0, python3-numpy), with the
plugin installed (``make install``) or on ``GST_PLUGIN_PATH``:

    /usr/bin/python3 examples/python/consumer.py --socket /tmp/video.sock --frames 100

Every wait is bounded (``--timeout`` seconds for each frame).
"""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstApp", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import Gst, GstApp, GstVideo  # noqa: E402

import numpy as np  # noqa: E402

# Packed formats this example turns into arrays, with their channel count.
CHANNELS = {
    "RGBA": 4, "BGRA": 4, "ARGB": 4, "ABGR": 4,
    "RGBx": 4, "BGRx": 4, "xRGB": 4, "xBGR": 4,
    "RGB": 3, "BGR": 3, "GRAY8": 1,
}


def to_array(sample):
    """The frame of a ``Gst.Sample`` as a fresh ``(height, width, channels)`` uint8 array."""
    info = GstVideo.VideoInfo.new_from_caps(sample.get_caps())
    fmt = info.finfo.name
    if fmt not in CHANNELS:
        raise ValueError(f"format {fmt} is not a packed format this example handles")
    channels = CHANNELS[fmt]
    height, width, stride = info.height, info.width, info.stride[0]
    buf = sample.get_buffer()
    ok, mapped = buf.map(Gst.MapFlags.READ)
    if not ok:
        raise RuntimeError("could not map the buffer")
    try:
        # Rows may be padded (stride >= width * channels): view, then copy the pixels.
        rows = np.frombuffer(mapped.data, dtype=np.uint8, count=stride * height)
        view = np.lib.stride_tricks.as_strided(
            rows, shape=(height, width, channels), strides=(stride, channels, 1)
        )
        return np.array(view, copy=True)
    finally:
        buf.unmap(mapped)


def frames(socket_path, fmt="RGBA", timeout=10.0):
    """Yields ``(pts_ns, array)`` for every frame the sink sends, until EOS.

    Raises ``RuntimeError`` on a pipeline error or when no frame (and no EOS)
    comes within ``timeout`` seconds.
    """
    Gst.init(None)
    pipeline = Gst.parse_launch(
        f"shmringsrc socket-path={socket_path} timeout={int(timeout * 1000)} "
        f"! videoconvert ! video/x-raw,format={fmt} "
        "! appsink name=sink sync=false max-buffers=4"
    )
    sink = pipeline.get_by_name("sink")
    bus = pipeline.get_bus()
    pipeline.set_state(Gst.State.PLAYING)
    try:
        while True:
            sample = sink.try_pull_sample(int(timeout * Gst.SECOND))
            if sample is None:
                msg = bus.pop_filtered(Gst.MessageType.ERROR)
                if msg is not None:
                    err, debug = msg.parse_error()
                    raise RuntimeError(f"{err.message} ({debug})")
                if sink.is_eos():
                    return
                raise RuntimeError(f"no frame within {timeout} s")
            yield sample.get_buffer().pts, to_array(sample)
    finally:
        pipeline.set_state(Gst.State.NULL)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--socket", required=True, help="socket-path of the shmringsink")
    ap.add_argument("--format", default="RGBA", choices=sorted(CHANNELS))
    ap.add_argument("--frames", type=int, default=0, help="stop after N frames (0: until EOS)")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each frame")
    ap.add_argument("--raw", help="write the frames' pixels, one after the other, to this file")
    args = ap.parse_args()

    out = open(args.raw, "wb") if args.raw else None
    n = 0
    try:
        for pts, frame in frames(args.socket, args.format, args.timeout):
            print(f"frame {n} pts {pts} shape {frame.shape} mean {frame.mean():.2f}", flush=True)
            if out:
                out.write(frame.tobytes())
            n += 1
            if args.frames and n == args.frames:
                break
    except RuntimeError as e:
        print(f"error after {n} frames: {e}", file=sys.stderr)
        return 1
    finally:
        if out:
            out.close()
    print(f"received {n} frames", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
