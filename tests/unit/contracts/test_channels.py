from __future__ import annotations

import pytest

from contracts.channels import Channel, classify, visit_from

SHOP = "https://shop.example/p/1"


@pytest.mark.parametrize(
    ("url", "referrer", "channel"),
    [
        (SHOP, None, Channel.DIRECT),
        (SHOP, "https://www.google.nl/", Channel.ORGANIC_SEARCH),
        (SHOP, "https://www.google.co.uk/search?q=x", Channel.ORGANIC_SEARCH),
        (SHOP + "?gclid=abc", "https://www.google.nl/", Channel.PAID_SEARCH),
        (SHOP + "?utm_source=google&utm_medium=cpc", None, Channel.PAID_SEARCH),
        (SHOP + "?utm_source=instagram&utm_medium=paid_social", None, Channel.PAID_SOCIAL),
        (SHOP + "?fbclid=xyz", "https://l.facebook.com/", Channel.ORGANIC_SOCIAL),
        (SHOP + "?ttclid=1", None, Channel.PAID_SOCIAL),
        (SHOP, "https://t.co/abc", Channel.ORGANIC_SOCIAL),
        (SHOP, "https://x.example.com/page", Channel.REFERRAL),
        (SHOP + "?utm_source=newsletter&utm_medium=email", None, Channel.EMAIL),
        (SHOP, "https://mail.google.com/", Channel.EMAIL),
        (SHOP + "?utm_medium=display&utm_source=dv360", None, Channel.DISPLAY),
        (SHOP + "?utm_source=youtube&utm_medium=cpv", None, Channel.PAID_VIDEO),
        (SHOP, "https://www.youtube.com/watch?v=1", Channel.ORGANIC_VIDEO),
        (SHOP + "?utm_source=bol&utm_medium=cpc", None, Channel.PAID_SHOPPING),
        (SHOP, "https://www.kieskeurig.nl/vergelijk", Channel.ORGANIC_SHOPPING),
        (SHOP + "?utm_medium=affiliate&utm_source=daisycon", None, Channel.AFFILIATES),
        (SHOP + "?utm_campaign=q4-cross-network&utm_medium=cpc", None, Channel.CROSS_NETWORK),
        (SHOP, "https://www.some-blog.nl/review", Channel.REFERRAL),
        (SHOP, "https://shop.example/cart", Channel.INTERNAL),
        (SHOP + "?utm_source=sms&utm_medium=sms", None, Channel.SMS),
        (SHOP + "?utm_medium=web-push", None, Channel.MOBILE_PUSH),
        (SHOP + "?utm_medium=something", None, Channel.UNASSIGNED),
        # Campaign parameters decide over the referrer, as in GA4.
        (
            SHOP + "?utm_source=newsletter&utm_medium=email",
            "https://www.google.com/",
            Channel.EMAIL,
        ),
        (
            SHOP + "?utm_source=partner&utm_medium=referral",
            "https://www.bing.com/",
            Channel.REFERRAL,
        ),
        (SHOP + "?utm_source=spring&utm_medium=something", "https://t.co/x", Channel.UNASSIGNED),
    ],
)
def test_visits_are_grouped_like_ga4_default_channels(
    url: str, referrer: str | None, channel: Channel
) -> None:
    assert classify(visit_from(url, referrer)) is channel


def test_explicit_campaign_fields_win_over_the_url() -> None:
    visit = visit_from(SHOP + "?utm_medium=cpc", None, source="Newsletter", medium="Email")
    assert classify(visit) is Channel.EMAIL
