"""The page in a real browser: headless Chromium (Debian's `chromium`, driven by Playwright) opens it,
generates from a prompt, paints a mask and inpaints, on tiny models at 2 steps. Screenshots go to
tests/serve/screenshots/ (ignored by git). `make install` installs the browser when run as root."""

import base64
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from .conftest import TOKEN

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
SHOTS = Path(__file__).parent / "screenshots"


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the dev extra (playwright) is not installed")
    if not Path(CHROMIUM).exists():  # a failure, not a skip: CI must run this test
        pytest.fail(f"no browser at {CHROMIUM}: install Debian's chromium (`apt-get install chromium`, which "
                    "`make install` does as root)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


def test_the_page_generates_and_inpaints(browser, live_server, tmp_path):
    SHOTS.mkdir(exist_ok=True)
    Image.new("RGB", (16, 16), (40, 120, 200)).save(tmp_path / "photo.png")
    page = browser.new_page(viewport={"width": 1000, "height": 760})
    errors = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(f"{live_server.url}/#token={TOKEN}")  # the fragment never reaches the server
    page.wait_for_selector("body[data-ready=true]")
    assert page.evaluate("location.hash") == ""  # and leaves the address bar

    page.fill("#prompt", "red apple")  # the text model is served first
    page.fill("#steps", "2")
    page.fill("#n", "1")
    page.fill("#guidance-low", "0.2")  # the CLI's --guidance-interval 0.2 5 --cache-interval 2
    page.fill("#guidance-high", "5")
    page.fill("#cache-interval", "2")
    page.click("#run")
    page.wait_for_selector("#gallery .card img")
    assert page.inner_text("#status-text") == "done: 1 image"
    page.screenshot(path=str(SHOTS / "generate.png"))
    params = downloaded_params(page.locator("#gallery .card").first)
    assert params["guidance_interval"] == [0.2, 5] and params["cache_interval"] == 2

    page.select_option("#model", "inpaint")
    assert page.is_hidden("#f-prompt") and page.inner_text("#run") == "Inpaint"
    page.set_input_files("#image-input", str(tmp_path / "photo.png"))
    page.wait_for_selector("#f-mask:not([hidden])")
    box = page.locator("#mask-canvas").bounding_box()
    page.mouse.move(box["x"] + 20, box["y"] + box["height"] * 0.6)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] - 20, box["y"] + box["height"] * 0.6, steps=6)
    page.mouse.up()
    page.fill("#steps", "2")
    page.click("#run")
    page.wait_for_selector("#gallery .card >> nth=1")
    page.screenshot(path=str(SHOTS / "inpaint.png"), full_page=True)

    newest = page.locator("#gallery .card").first
    assert "inpaint" in newest.locator("figcaption").inner_text()
    image = downloaded_png(newest)
    params = json.loads(image.text["ldmkit"])  # the download carries the metadata
    assert params["task"] == "inpaint" and params["steps"] == 2
    pixels = image.convert("RGB").load()
    assert pixels[0, 0] == (40, 120, 200)  # above the painted stroke: kept exactly
    newest.locator("button.reuse").click()
    assert page.input_value("#seed") == str(params["seed"])
    assert errors == []



def downloaded_png(card) -> Image.Image:
    """The PNG a gallery card's download link holds."""
    png = card.locator("a[download]").get_attribute("href")
    return Image.open(io.BytesIO(base64.b64decode(png.split(",", 1)[1])))


def downloaded_params(card) -> dict:
    return json.loads(downloaded_png(card).text["ldmkit"])
