"""Images inside merged-forward messages: found through get_forward_msg, bounded, acted on the forward."""

from __future__ import annotations

from nonebot.adapters.onebot.v11 import Message, MessageSegment
from nonebot.adapters.onebot.v11.exception import ActionFailed
from nonebug import App

from nailong_bot.stats import Counts

from nailong_testkit import BLUE, YELLOW, group_event, image_segment, still, text_segment
from nonebug_chat import connect

WARNING = "检测到奶龙图片"


def forward_segment(forward_id: str, **data) -> dict:
    return {"type": "forward", "data": {"id": forward_id, **data}}


def node(*content: dict) -> dict:
    """A node segment, as the OneBot v11 standard answers get_forward_msg."""
    return {"type": "node", "data": {"user_id": "7", "nickname": "someone", "content": list(content)}}


def acted_on(ctx, message_id: int) -> None:
    ctx.should_call_api("delete_msg", {"message_id": message_id}, result=None)
    warning = Message([MessageSegment.at(5), MessageSegment.text(" " + WARNING)])
    ctx.should_call_api("send_group_msg", {"group_id": 1, "message": warning}, result={"message_id": 99})


async def test_image_inside_a_forward_recalls_the_forward(app: App, guard, image_server) -> None:
    blue = image_server.add("fwd-blue.jpg", still(BLUE))
    yellow = image_server.add("fwd-yellow.jpg", still(YELLOW, size=(81, 81)))
    answer = {"message": [node(text_segment("看")), node(image_segment(blue), image_segment(yellow))]}
    async with app.test_matcher() as ctx:
        ctx.receive_event(connect(ctx), group_event([forward_segment("F1")], message_id=61))
        ctx.should_call_api("get_forward_msg", {"id": "F1"}, result=answer)
        acted_on(ctx, 61)
    assert guard.stats.over_days(1, 1) == Counts(checked=2, hits=1, recalls=1)


async def test_nested_forward_in_the_messages_shape(app: App, guard, image_server) -> None:
    yellow = image_server.add("fwd-nested.jpg", still(YELLOW, size=(82, 82)))
    # go-cqhttp, NapCat and others: {"messages": [...]}, each with `message` or `content`, CQ strings too.
    outer = {"messages": [{"message": [text_segment("转发")]}, {"message": [forward_segment("F3")]}]}
    inner = {"messages": [{"content": f"[CQ:image,file=ABC.jpg,url={yellow}]"}]}
    async with app.test_matcher() as ctx:
        ctx.receive_event(connect(ctx), group_event([forward_segment("F2")], message_id=62))
        ctx.should_call_api("get_forward_msg", {"id": "F2"}, result=outer)
        ctx.should_call_api("get_forward_msg", {"id": "F3"}, result=inner)
        acted_on(ctx, 62)


async def test_inline_forward_content_needs_no_call(app: App, guard, image_server) -> None:
    yellow = image_server.add("fwd-inline.jpg", still(YELLOW, size=(83, 83)))
    inline = forward_segment("F4", content=[{"message": [image_segment(yellow)]}])
    async with app.test_matcher() as ctx:
        ctx.receive_event(connect(ctx), group_event([inline], message_id=63))
        acted_on(ctx, 63)


async def test_forwards_are_bounded(app: App, start_guard, image_server, caplog_loguru) -> None:
    guard = await start_guard(nailong_forward_max_depth=1, nailong_forward_max_nodes=2, nailong_forward_max_images=2)
    blue = [image_server.add(f"fwd-limit-{i}.jpg", still(BLUE, size=(60 + i, 60))) for i in range(3)]
    yellow = image_server.add("fwd-over-limit.jpg", still(YELLOW, size=(84, 84)))
    async with app.test_matcher() as ctx:
        bot = connect(ctx)
        # Past the image limit.
        ctx.receive_event(bot, group_event([forward_segment("L1")], message_id=64))
        answer = {"message": [node(image_segment(blue[0]), image_segment(blue[1]), image_segment(yellow))]}
        ctx.should_call_api("get_forward_msg", {"id": "L1"}, result=answer)
        # Past the message limit.
        ctx.receive_event(bot, group_event([forward_segment("L2")], message_id=65))
        answer = {"message": [node(text_segment("1")), node(image_segment(blue[2])), node(image_segment(yellow))]}
        ctx.should_call_api("get_forward_msg", {"id": "L2"}, result=answer)
        # Past the depth limit: the inner forward is not asked for.
        ctx.receive_event(bot, group_event([forward_segment("L3")], message_id=66))
        ctx.should_call_api("get_forward_msg", {"id": "L3"}, result={"message": [node(forward_segment("L4"))]})
    assert guard.stats.over_days(1, 1) == Counts(checked=3)
    assert sum("forward over its limits" in line for line in caplog_loguru) == 3


async def test_failed_or_odd_forwards_cost_only_themselves(app: App, guard, image_server, caplog_loguru) -> None:
    yellow = image_server.add("fwd-beside.jpg", still(YELLOW, size=(85, 85)))
    failure = ActionFailed(status="failed", retcode=100, msg="expired", wording="", data=None)
    segments = [forward_segment("GONE"), forward_segment("ODD"), {"type": "forward", "data": {"id": ["x"]}}]
    async with app.test_matcher() as ctx:
        bot = connect(ctx)
        ctx.receive_event(bot, group_event([*segments, image_segment(yellow)], message_id=67))
        ctx.should_call_api("get_forward_msg", {"id": "GONE"}, exception=failure)
        ctx.should_call_api("get_forward_msg", {"id": "ODD"}, result={"message": [5, {"type": "node"}, node(5)]})
        acted_on(ctx, 67)
    assert any("get_forward_msg failed" in line for line in caplog_loguru)
    assert any("forward without an id" in line for line in caplog_loguru)
    assert not any("| ERROR " in line for line in caplog_loguru)


async def test_forwards_can_be_left_unchecked(app: App, start_guard) -> None:
    guard = await start_guard(nailong_forward_max_depth=0)
    async with app.test_matcher() as ctx:
        ctx.receive_event(connect(ctx), group_event([forward_segment("OFF")], message_id=68))
    assert guard.stats.over_days(1, 1) == Counts()


async def test_a_malformed_forward_hides_nothing(app: App, guard, image_server, caplog_loguru) -> None:
    beside = image_server.add("fwd-malformed-beside.jpg", still(YELLOW, size=(86, 86)))
    inside = image_server.add("fwd-malformed-inside.jpg", still(YELLOW, size=(87, 87)))
    broken = {"type": "image", "data": None}
    answer = {"message": [node(broken, {"type": "text", "data": "x"}), node(image_segment(inside)), None]}
    async with app.test_matcher() as ctx:
        bot = connect(ctx)
        # Beside a nailong image: the image is acted on.
        ctx.receive_event(bot, group_event([forward_segment("M1"), image_segment(beside)], message_id=69))
        ctx.should_call_api("get_forward_msg", {"id": "M1"}, result=answer)
        acted_on(ctx, 69)
        # Alone: its well-formed nailong image is still found.
        ctx.receive_event(bot, group_event([forward_segment("M2")], message_id=70))
        ctx.should_call_api("get_forward_msg", {"id": "M2"}, result=answer)
        acted_on(ctx, 70)
    assert sum("malformed nodes or segments in a forward skipped" in line for line in caplog_loguru) >= 1


class CountedNode(dict):
    """A node that counts how often it is looked into."""

    reads = 0

    def get(self, *args):
        CountedNode.reads += 1
        return super().get(*args)


async def test_nodes_past_the_limit_are_not_read(app: App, start_guard, image_server) -> None:
    guard = await start_guard(nailong_forward_max_nodes=100)
    yellow = image_server.add("fwd-node-101.jpg", still(YELLOW, size=(88, 88)))
    nodes = [node(text_segment(str(i))) for i in range(100)] + [node(image_segment(yellow))]
    nodes += [CountedNode(node(text_segment("more"))) for _ in range(9_899)]
    async with app.test_matcher() as ctx:
        ctx.receive_event(connect(ctx), group_event([forward_segment("BIG")], message_id=71))
        ctx.should_call_api("get_forward_msg", {"id": "BIG"}, result={"message": nodes})
    assert CountedNode.reads == 0
    assert guard.stats.over_days(1, 1) == Counts()
