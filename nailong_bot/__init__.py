"""奶龙守卫 nailong_bot: recalls nailong images in QQ groups (NoneBot2 plugin, OneBot v11).

The plugin is set up only when NoneBot loads the package (NoneBot sets ``__plugin__`` on the
module before running it), so its NoneBot-free modules stay importable on their own.
"""

if "__plugin__" in globals():
    from .plugin import __plugin_meta__, plugin_config  # noqa: F401
