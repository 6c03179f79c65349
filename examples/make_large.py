"""Make examples/rocket_20mp.jpg: rocket.jpg upscaled to 5472x3648 (a 20 MP camera size).

It is an upscale, not a real 20 MP photo: it exists to exercise the large-image path.
rocket.jpg is 640x427 (aspect 1.499); scaling its width to 5472 gives 3651 rows, so the
result is centre-cropped by 3 rows (1 at the top, 2 at the bottom) to 3648.
Full-image coordinates map as x_large = x * 8.55, y_large = y * 3651 / 427 - 1.

Run from the repository root: python examples/make_large.py
"""

from pathlib import Path

import cv2

HERE = Path(__file__).resolve().parent
W, H = 5472, 3648

src = cv2.imread(str(HERE / "rocket.jpg"), cv2.IMREAD_COLOR)  # BGR, 427 x 640
h0, w0 = src.shape[:2]
h1 = round(h0 * W / w0)  # 3651
big = cv2.resize(src, (W, h1), interpolation=cv2.INTER_CUBIC)
top = (h1 - H) // 2  # 1
big = big[top : top + H]
assert big.shape[:2] == (H, W), big.shape
cv2.imwrite(str(HERE / "rocket_20mp.jpg"), big, [cv2.IMWRITE_JPEG_QUALITY, 85])
print(f"wrote rocket_20mp.jpg: {W}x{H}, cropped {top} row(s) top, {h1 - H - top} bottom")
