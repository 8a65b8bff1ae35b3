"""Talking with a model, below training and every interface.

    session.py   ChatSession (the training template, replies streamed as they become certain), ReplyText
    log.py       ChatLog: a conversation appended to logs/chat/ turn by turn
"""

from microgpt.chat.log import ChatLog
from microgpt.chat.session import ChatSession

__all__ = ["ChatLog", "ChatSession"]
