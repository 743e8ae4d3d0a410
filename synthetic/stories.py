"""A seeded procedural generator of simple children's stories, for offline tests and demos.

    text = "\\n<|endoftext|>\\n".join(generate_stories(500, seed=0))

Each story has a character (a child or an animal with a name), a place, a wanted object, a small
problem (lost, broken, stuck, too high, raining ...), a helper, a resolution and a closing line,
written from templates over word lists of roughly 1,500 distinct words. It imitates the *shape* of
TinyStories (short sentences, a few hundred words of vocabulary per story, "Once upon a time")
so that the tokenizer, cache, training and sampling code can be tested without the real data. It is
not a substitute for TinyStories: a model trained on it learns templates, not language.
"""
from __future__ import annotations

import random

SEPARATOR = "<|endoftext|>"

GIRLS = ("Lily Mia Sue Anna Emma Zoe Lucy Ella Rosa Amy Kate Nora Ruby Ivy Jane Maya Lola Sara Tina Alice "
         "Daisy Molly Hannah Grace Chloe Sophie Clara Julia Wendy Polly Hazel Olive Fiona Nina Bella Lena "
         "Amber Beth Cora Dora Eva Flora Gemma Holly Iris Jill Kira Luna Mila Nell Pia Rita Stella Tess "
         "Vera Willa Zara Abby Cindy Dina Elsa Gina Heidi Jenny Kelly Lara Megan Nancy Penny Rachel").split()
BOYS = ("Tom Ben Max Sam Leo Jack Tim Joe Finn Luke Noah Owen Ryan Adam Eli Theo Hugo Oscar Dan Paul "
        "Billy Jimmy Timmy Bobby Henry Felix Milo Jake Oliver Lucas Peter Mark Kevin Simon Toby Ned "
        "Alex Bruno Carl David Ethan Frank George Harry Ian Jonah Kyle Liam Mason Nick Otto Pete Quinn "
        "Ralph Seth Victor Walter Zack Arthur Bert Colin Dennis Eddie Fred Gus Hank Isaac Jasper").split()
ANIMALS = ("cat dog bunny bear fox mouse bird duck frog owl pig cow horse lamb puppy kitten squirrel deer "
           "turtle fish monkey lion tiger elephant giraffe zebra hen chick goat sheep wolf rabbit hedgehog "
           "penguin seal whale dolphin crab snail bee butterfly ladybug ant spider worm donkey pony raccoon").split()
ANIMAL_NAMES = ("Spot Fluffy Max Buddy Coco Pip Bubbles Sunny Patch Whiskers Ginger Pepper Snowy Biscuit "
                "Tiny Rusty Shadow Cookie Honey Nibbles Button Sparky Dotty Fuzzy Ziggy Mittens").split()
ADJ_CHAR = ("little small happy kind brave curious shy funny clever friendly gentle playful silly sleepy "
            "smart strong fast slow loud polite wise cute messy tidy eager nervous honest generous "
            "young tiny cheerful quiet busy proud lonely bold helpful sweet jolly careful lazy grumpy").split()
PLACES = ("park garden forest beach farm house kitchen school river lake hill meadow pond zoo town yard "
          "orchard desert harbor bridge tower attic basement porch station circus fair pool stable "
          "greenhouse lighthouse cottage palace swamp prairie canyon waterfall "
          "library shop playground field cave island jungle castle village barn backyard bakery market "
          "mountain valley street museum boat train nest tree sky").split()
OBJECTS = ("ball kite toy box hat book doll car truck balloon cake apple cookie flower shell stone "
           "bucket hammer necklace bracelet button ribbon tent flag guitar piano violin trumpet camera "
           "telescope compass lantern candle mirror comb brush towel jacket sweater dress skirt belt "
           "watch wallet notebook sticker magnet bubble yoyo top tractor helmet glove mask cape wand "
           "key ring crown drum bell blanket teddy rope shoe sock boot cup spoon bowl basket bucket "
           "shovel boat train plane robot puzzle crayon pencil paint brush leaf feather stick star "
           "map coin sandwich banana carrot pie candy jar lamp clock bike scarf mitten umbrella whistle "
           "marble block wagon sled swing slide rock gift letter picture bag pillow").split()
COLORS = "red blue green yellow pink purple orange white black brown gold silver shiny soft big round".split()
PROBLEMS = (
    ("lost", "could not find the {obj} anywhere", "looked under the {thing} and found it"),
    ("broken", "saw that the {obj} was broken", "fixed it with some {fix}"),
    ("high", "saw the {obj} stuck high up in a {tall}", "climbed up and got it down"),
    ("rain", "wanted to play with the {obj}, but it started to rain", "waited until the sun came out"),
    ("share", "did not want to share the {obj}", "learned that sharing is fun"),
    ("scared", "was scared of a loud noise near the {obj}", "found out it was only the wind"),
    ("dirty", "saw that the {obj} was very dirty", "washed it in the {water}"),
    ("far", "saw the {obj} float away down the {water}", "ran along the bank and caught it"),
    ("heavy", "could not lift the heavy {obj}", "pushed it together"),
    ("hungry", "was very hungry and wanted a {food}", "baked a {food} together"),
)
PLURAL = {"mouse": "mice", "sheep": "sheep", "fish": "fish", "deer": "deer", "wolf": "wolves", "pony": "ponies",
          "puppy": "puppies", "butterfly": "butterflies", "ladybug": "ladybugs", "fox": "foxes"}
NATURE = ("flowers trees clouds rocks leaves bugs birds waves shells puddles sticks acorns berries mushrooms "
          "pebbles weeds roses daisies tulips pinecones snowflakes raindrops stars hills boats kites").split()
NATURE_ADJ = ("tall tiny bright colorful pretty little huge wet dry warm cold fresh sparkly muddy sandy "
              "green golden fluffy smooth bumpy sticky noisy gentle wild lovely strange old new").split()
GERUNDS = ("running jumping singing dancing swimming flying sleeping eating playing hiding digging "
           "climbing splashing chirping buzzing laughing humming waving rolling hopping reading "
           "spinning sliding skipping resting drinking looking walking crawling wiggling").split()
SIGHTS = ("{Pron} saw {n} {adj} {nature} near the {place2}.",
          "{Pron} saw a {animal} {gerund} by the {thing}.",
          "On the way, {pron} met a {adj2} {animal} who was {gerund}.",
          "{name} counted {n} {nature} and laughed.",
          "The {nature} were {adj} and {adj3}.",
          "{name} heard a {animal} {gerund} far away.")
NUMBERS = "two three four five six seven eight nine ten many some".split()
THINGS = "bed table chair bush rug sofa bench car door tree box leaves".split()
FIXES = "glue tape string paint nails thread".split()
TALL = "tree fence roof pole wall shelf".split()
WATERS = "river pond lake stream sink bath".split()
FOODS = ("cake pie cookie sandwich muffin pancake soup apple banana carrot pizza waffle cupcake "
         "biscuit pudding salad noodle pear peach plum cherry grape melon lemon").split()
HELPERS = ("mom dad grandma grandpa sister brother friend teacher neighbor aunt uncle "
           "owl dog cat bird bear fox").split()
FEELINGS_GOOD = "happy glad proud excited thankful calm cheerful joyful".split()
FEELINGS_BAD = "sad upset worried scared angry grumpy lonely confused".split()
VERBS_PLAY = ("run jump dance sing play swim climb read draw paint build explore hop skip laugh "
              "race spin roll dig bake count").split()
TIMES = ("One day", "One morning", "One sunny day", "One evening", "Later that day", "The next day",
         "One afternoon", "One rainy day", "One snowy day", "One windy day")
OPENINGS = ("Once upon a time, there was", "There was once", "Once there was", "Long ago, there was")
ENDINGS = (
    "From that day on, {name} always {lesson}.",
    "{name} learned that {moral}.",
    "They played together until the sun went down.",
    "{name} smiled and gave {helper_ref} a big hug.",
    "It was the best day ever.",
    "That night, {name} went to bed {good} and dreamed about the {obj}.",
)
LESSONS = ("shared the {obj} with friends", "took good care of the {obj}", "asked for help",
           "was kind to everyone", "looked before jumping", "said thank you")
MORALS = ("friends help each other", "sharing makes everyone happy", "it is good to be kind",
          "you should never give up", "being brave is not easy but it is good", "a little help goes a long way")


def _character(rng: random.Random) -> dict:
    if rng.random() < 0.6:
        girl = rng.random() < 0.5
        name = rng.choice(GIRLS if girl else BOYS)
        kind = "girl" if girl else "boy"
        pron, poss = ("she", "her") if girl else ("he", "his")
    else:
        kind = rng.choice(ANIMALS)
        name = rng.choice(ANIMAL_NAMES)
        pron, poss = rng.choice((("she", "her"), ("he", "his")))
    return {"name": name, "kind": kind, "pron": pron, "poss": poss, "adj": rng.choice(ADJ_CHAR)}


def _plural(word: str) -> str:
    return PLURAL.get(word, word + "s")


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def story(rng: random.Random) -> str:
    c = _character(rng)
    name, pron, poss = c["name"], c["pron"], c["poss"]
    Pron = pron.capitalize()
    obj, color, place = rng.choice(OBJECTS), rng.choice(COLORS), rng.choice(PLACES)
    helper = rng.choice(HELPERS)
    helper_ref = f"{poss} {helper}" if helper in HELPERS[:11] else f"the {helper}"
    kind, cause, fix = rng.choice(PROBLEMS)
    fmt = {"obj": obj, "thing": rng.choice(THINGS), "fix": rng.choice(FIXES), "tall": rng.choice(TALL),
           "water": rng.choice(WATERS), "food": rng.choice(FOODS)}
    verb, verb2 = rng.sample(VERBS_PLAY, 2)
    good, bad = rng.choice(FEELINGS_GOOD), rng.choice(FEELINGS_BAD)
    s = [f"{rng.choice(OPENINGS)} {_a(c['adj'])} {c['kind']} named {name}."]
    s.append(rng.choice((
        f"{Pron} loved to {verb} in the {place}.",
        f"{Pron} lived near the {place} and liked to {verb} every day.",
        f"{name} liked to {verb} and {verb2} with {poss} friends.",
    )))
    s.append(rng.choice((
        f"{name} had {_a(color)} {obj} that {pron} loved very much.",
        f"{Pron} had a favorite {obj}. It was {color}.",
        f"{name}'s {helper} gave {'her' if pron == 'she' else 'him'} {_a(color)} {obj}.",
    )))
    time = rng.choice(TIMES)
    s.append(f"{time}, {name} went to the {rng.choice(PLACES)} with the {obj}.")
    for _ in range(rng.randint(0, 2)):
        animal = rng.choice(ANIMALS)
        s.append(rng.choice(SIGHTS).format(
            Pron=Pron, pron=pron, name=name, n=rng.choice(NUMBERS), adj=rng.choice(NATURE_ADJ),
            adj2=rng.choice(ADJ_CHAR), adj3=rng.choice(NATURE_ADJ), nature=rng.choice(NATURE),
            place2=rng.choice(PLACES), animal=animal, gerund=rng.choice(GERUNDS), thing=rng.choice(THINGS)))
    if rng.random() < 0.5:
        s.append(rng.choice(("The sun was warm and the birds were singing.", "The wind was cold.",
                             f"There were many {_plural(rng.choice(ANIMALS))} there.", "It was very quiet.")))
    s.append(f"{name} {cause.format(**fmt)}.")
    s.append(rng.choice((f"{Pron} felt {bad}.", f"{name} was very {bad}.", f"{Pron} began to cry.")))
    s.append(rng.choice((
        f'"What is wrong?" asked {helper_ref}.',
        f"Then {helper_ref} came by and saw {name}.",
        f'"Can you help me?" {name} asked {helper_ref}.',
    )))
    s.append(rng.choice((
        f'"Do not worry," said {helper_ref}. "We can do it together."',
        f'"I will help you," said {helper_ref} with a smile.',
        f"{helper_ref.capitalize()} had a good idea.",
    )))
    s.append(f"Together they {fix.format(**fmt)}.")
    s.append(rng.choice((f"{name} was so {good}!", f"{Pron} felt {good} again.",
                         f'"Thank you!" said {name}. "You are a good friend."')))
    ending = rng.choice(ENDINGS)
    s.append(ending.format(name=name, helper_ref=helper_ref, good=good, obj=obj,
                           lesson=rng.choice(LESSONS).format(obj=obj), moral=rng.choice(MORALS)))
    return " ".join(s)


def generate_stories(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(f"stories:{seed}")
    return [story(rng) for _ in range(n)]


def stories_text(n: int, seed: int = 0) -> str:
    """n stories in the TinyStories .txt layout: stories separated by a line `<|endoftext|>`."""
    return f"\n{SEPARATOR}\n".join(generate_stories(n, seed)) + "\n"
