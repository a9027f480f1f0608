"""End-to-end tests in headless Chromium, and the HTTP routes of the pages."""
