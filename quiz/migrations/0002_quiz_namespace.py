"""The realtime namespace of the game's channels: players (CUSTOM) and staff (USER)."""

from django.db import migrations


def create_namespace(apps, schema_editor):
    Namespace = apps.get_model("realtime", "Namespace")
    Namespace.objects.update_or_create(
        name="quiz",
        defaults={
            "description": "Live quiz games: /quiz/<code>/game, /leaderboard, /players/<id>, /answers.",
            "publish_auth_modes": ["CUSTOM", "USER"],
            "subscribe_auth_modes": ["CUSTOM", "USER"],
        },
    )


def remove_namespace(apps, schema_editor):
    apps.get_model("realtime", "Namespace").objects.filter(name="quiz").delete()


class Migration(migrations.Migration):
    dependencies = [("quiz", "0001_initial"), ("realtime", "0003_namespace_user_groups")]
    operations = [migrations.RunPython(create_namespace, remove_namespace)]
