"""Screenshots of the page for the README, taken from a running Muse with the real model.

    make run                                   # in one shell; wait for /readyz?require=llm
    .venv/bin/python docs/page_screenshots.py --url http://127.0.0.1:8000 --out docs/img

Drives Debian's headless Chromium (as tests/web does): a demo user asks for something and
the answer is captured once complete (``chat.png``); then a new user's cold-start choices with
three marked (``cold-start.png``). Prints each text the page showed, so the shots can be read
as text too. Writes nothing else; the new user's three likes stay in the store.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    parser.add_argument("--user", default="demo-user-01")
    parser.add_argument("--ask", default="something light from the 90s")
    args = parser.parse_args()

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1100"):
        options.add_argument(arg)
    d = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    wait = WebDriverWait(d, 120, poll_frequency=0.2)
    css = lambda q: d.find_elements(By.CSS_SELECTOR, q)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        d.get(f"{args.url}/")
        wait.until(lambda _: css(f"#user option[value='{args.user}']"))
        Select(css("#user")[0]).select_by_value(args.user)
        wait.until(lambda _: css("#history li[data-kind]"))
        css("#message")[0].send_keys(args.ask)
        started = time.monotonic()
        css("#send")[0].click()
        wait.until(lambda _: css(".msg.assistant .card") and not css(".msg.assistant[aria-busy]"))
        print(f"answer complete in {time.monotonic() - started:.1f} s (as the page saw it)")
        for card in css(".card"):
            print("-", card.text.replace("\n", " | "))
        d.execute_script("arguments[0].scrollIntoView()", css(".msg.user")[0])
        d.save_screenshot(str(args.out / "chat.png"))

        css("#new-user")[0].click()
        wait.until(lambda _: len(css("#onboarding-items .choice")) >= 3)
        for choice in css("#onboarding-items .choice")[:3]:
            choice.click()
        d.execute_script("window.scrollTo(0, 0)")
        d.save_screenshot(str(args.out / "cold-start.png"))
        print("wrote", args.out / "chat.png", "and", args.out / "cold-start.png")
    finally:
        d.quit()


if __name__ == "__main__":
    main()
