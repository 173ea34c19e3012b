"""The quiz namespace lists who is connected on its presence channels (the host sees players online)."""

from django.db import migrations


def list_members(apps, schema_editor):
    apps.get_model("realtime", "Namespace").objects.filter(name="quiz").update(
        presence=True, presence_max_members=500
    )


def counts_only(apps, schema_editor):
    apps.get_model("realtime", "Namespace").objects.filter(name="quiz").update(presence=False)


class Migration(migrations.Migration):
    dependencies = [("quiz", "0005_player_join_key"), ("realtime", "0010_namespace_presence")]
    operations = [migrations.RunPython(list_members, counts_only)]
