"""plugin-drop 1.0: the harmless-looking part of the drop."""


def hello():
    return "hello from plugin-drop"
