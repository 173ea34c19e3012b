"""The game's channels keep their last publications: a phone that reconnects gets what it missed.

(PROTOCOL §12, "History": realtime.js re-subscribes with ``since``.)
"""

from django.db import migrations


def keep_history(apps, schema_editor):
    apps.get_model("realtime", "Namespace").objects.filter(name="quiz").update(
        history_size=100, history_ttl=900
    )


def drop_history(apps, schema_editor):
    apps.get_model("realtime", "Namespace").objects.filter(name="quiz").update(history_size=0)


class Migration(migrations.Migration):
    dependencies = [("quiz", "0006_namespace_presence"), ("realtime", "0011_namespace_history")]
    operations = [migrations.RunPython(keep_history, drop_history)]
