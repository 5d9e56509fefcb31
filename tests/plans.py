"""Driving a pure plan without a server: canned answers in, its commands and result out."""

from __future__ import annotations

from typing import Any

from agno_mongo.ops.command import WRITE_OPS, Command, Pause, Plan, ReplyLost, Written


def drive(plan: Plan[Any], answers: list[Any], *, use_every_answer: bool = True) -> tuple[list[Command], Any]:
    """Feed ``answers`` to a plan, one per command; return its commands and result.

    An answer is a value to send, an exception to throw into the plan, or a callable that makes one of
    those from the command. A :class:`Pause` is resumed at once. With ``use_every_answer`` the plan
    must have used every answer by the time it stops. A write is answered with :class:`Written`
    (or an error), as the drivers answer it, so a plan cannot pass on a reply no driver sends.
    """
    commands: list[Command] = []
    value: Any = None
    send = plan.send
    try:
        while True:
            step = send(value)
            if isinstance(step, Pause):
                value, send = None, plan.send
                continue
            assert isinstance(step, Command)
            commands.append(step)
            answer = answers.pop(0)
            if callable(answer):
                answer = answer(step)
            if isinstance(answer, BaseException):
                value, send = answer, plan.throw  # type: ignore[assignment]
            elif step.op in WRITE_OPS:
                assert isinstance(answer, Written), f"{step.op} is answered with Written, not {answer!r}"
                value, send = answer, plan.send
            else:
                value, send = answer, plan.send
    except StopIteration as stop:
        if use_every_answer:
            assert answers == [], "the plan stopped before using every answer"
        return commands, stop.value


def lost(command: Command) -> ReplyLost:
    """The reply of ``command`` lost on a reset connection: applied or not, the plan cannot tell."""
    return ReplyLost(command, OSError("connection reset"))
