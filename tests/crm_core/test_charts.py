import io
import struct
from datetime import date, timedelta

import pytest

from crm_core.charts import PNG_MAGIC, render_stats_chart
from crm_core.services.analytics import DailySeries


def series(n: int) -> DailySeries:
    days = [date(2026, 3, 1) + timedelta(days=i) for i in range(n)]
    return DailySeries(
        days=days,
        complaints_by_category={"billing": [i % 3 for i in range(n)], "other": [1] * n},
        resolution_hours=[None if i % 4 == 0 else 2.5 * i for i in range(n)],
        bot_answered=[5] * n,
        handoffs_requested=[i % 5 for i in range(n)],
    )


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.parametrize("days", [1, 7, 31])
def test_the_chart_is_a_png_that_decodes(days: int) -> None:
    data = render_stats_chart(series(days), title="Last days")
    assert png_size(data) == (900, 900)
    import matplotlib.image

    pixels = matplotlib.image.imread(io.BytesIO(data), format="png")
    assert pixels.shape[:2] == (900, 900)
    assert data.endswith(b"IEND\xaeB`\x82")  # complete file


def test_a_period_without_data_still_renders() -> None:
    empty = DailySeries(
        days=[date(2026, 3, 1)],
        complaints_by_category={"billing": [0]},
        resolution_hours=[None],
        bot_answered=[0],
        handoffs_requested=[0],
    )
    assert png_size(render_stats_chart(empty)) == (900, 900)
