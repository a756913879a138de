"""Zone vectors from free-text radiology reports ("right lower lobe opacity", "bibasilar atelectasis", "no
consolidation in the left lung"), for datasets whose reports are not in the QaTa/MosMed template.

Zone order as in `zones.py`: `[L-upper, L-middle, L-lower, R-upper, R-middle, R-lower]`. `parse_report` returns
the sides the report names; `caption_zones` turns them into image space (left = the image-left half, see
`zone_masks.py`) under the dataset's laterality: radiology reports name the PATIENT's side, and on a frontal chest
X-ray the patient's right lies on the image left.

Anatomy -> zones (one table, used by the parser):

| phrase in the report                                   | zones                                      |
|--------------------------------------------------------|--------------------------------------------|
| right upper lobe, RUL                                  | R-upper                                    |
| right middle lobe, RML                                 | R-middle                                   |
| right lower lobe, RLL                                  | R-lower                                    |
| left upper lobe, LUL                                   | L-upper, L-middle (holds the lingula)      |
| lingula, lingular                                      | L-middle                                   |
| middle lobe (no side: only the right lung has one)     | R-middle                                   |
| retrocardiac                                           | L-lower                                    |
| left lower lobe, LLL                                   | L-lower                                    |
| upper / mid / middle / lower zone, lung, field; midzone | that level                                |
| apex, apices, apical, biapical                         | upper                                      |
| base, bases, basilar, basal, bibasilar, bibasal        | lower                                      |
| hilum, hila, hilar, perihilar                          | middle                                     |
| a side with no level (right lung, left hemithorax)     | that side's three zones                    |
| pleural effusion with a side and no level              | that side's lower zone (it layers basally) |
| bilateral, both, diffuse, bi- words, plurals (bases)   | both sides                                 |

A mention is negated when a negation cue ("no", "without", "negative for", "free of", "clear", "resolved", ...)
stands before it in the same sentence with no clause break ("but", "however", "there is", ...) between them,
or when "is clear" / "are unremarkable" / ... follows it in its clause. A report whose mentions are all
negated, or that names no position, has an **unknown** position: `parse_report` returns None.
"""

from __future__ import annotations

import re

from medref_cli.errors import MedrefError
from medref_cli.zones import Zones, flip_zones, has_position, parse_zones

LEVEL_INDEX = {"upper": 0, "middle": 1, "lower": 2}
LOBES = {  # abbreviation -> (side, levels)
    "rul": ("right", ("upper",)), "rml": ("right", ("middle",)), "rll": ("right", ("lower",)),
    "lul": ("left", ("upper", "middle")), "lll": ("left", ("lower",)),
}
LEVEL_WORDS = {
    "upper": "upper", "apex": "upper", "apices": "upper", "apical": "upper", "apically": "upper",
    "mid": "middle", "middle": "middle", "midlung": "middle", "midzone": "middle", "midzones": "middle",
    "hilum": "middle", "hila": "middle", "hilar": "middle", "perihilar": "middle",
    "lower": "lower", "base": "lower", "bases": "lower", "basilar": "lower", "basal": "lower",
    "basally": "lower", "basis": "lower",
}
BOTH_LEVEL_WORDS = {"bibasilar": "lower", "bibasal": "lower", "bibasally": "lower", "biapical": "upper"}
PLURAL_HEADS = {"bases", "apices", "lobes", "zones", "midzones", "lungs", "hila", "fields"}
EFFUSION_HEADS = {"pleural", "effusion", "effusions", "costophrenic"}
FINDINGS = {"opacity", "opacities", "opacification", "infiltrate", "infiltrates", "airspace", "interstitial",
            "consolidation", "consolidations", "atelectasis", "nodule", "nodules", "nodular", "granuloma",
            "granulomas", "effusion", "effusions", "edema", "markings", "scarring", "disease", "pneumonia",
            "densities", "density", "infiltration", "fibrosis", "patchy", "reticular"}
NON_LUNG = {"rib", "ribs", "shoulder", "shoulders", "clavicle", "clavicles", "scapula", "glenoid", "humerus",
            "acromioclavicular", "glenohumeral", "hemidiaphragm", "hemidiaphragms", "diaphragm", "renal", "kidney",
            "breast", "breasts", "quadrant", "atrium", "ventricle", "atrial", "ventricular", "heart", "chest"}
DEVICES = {"catheter", "tube", "line", "picc", "pacemaker", "port", "mediport", "clip", "clips", "lead", "leads",
           "wire", "wires", "device", "generator", "icd", "stent"}
PSEUDO_NEGATION = re.compile(r"\b(no|without)\s+(significant\s+|interval\s+)?change\b")
HEADS = {"lung", "lungs", "lobe", "lobes", "zone", "zones", "field", "fields", "hemithorax", "hemithoraces",
         "base", "bases", "apex", "apices", "hilum", "hila", "midlung", "lingula", "lingular", "retrocardiac",
         *EFFUSION_HEADS}
HEADS |= (set(LEVEL_WORDS) - {"upper", "mid", "middle", "lower"}) | set(BOTH_LEVEL_WORDS) | set(LOBES)
SIDE_WORDS = {"right": "right", "left": "left", "bilateral": "both", "bilaterally": "both", "both": "both",
              "diffuse": "both", "diffusely": "both", "right-sided": "right", "left-sided": "left"}
PRE_NEGATION = re.compile(r"\b(no|not|without|negative for|free of|absence of|nor)\b")  # scope: the sentence
PRE_NEGATION_LOCAL = re.compile(r"\b(clear|clearing|cleared|normal|resolved|resolution of|removal of)\b")  # the clause
POSITION_VOCAB = re.compile(
    r"\b(right|left|bilateral|bilaterally|both|rul|rml|rll|lul|lll|lingula|lingular|apex|apices|apical|"
    r"biapical|base|bases|basilar|basal|bibasilar|bibasal|hilum|hila|hilar|perihilar|upper lobes?|"
    r"lower lobes?|middle lobe)\b")
POST_NEGATION = re.compile(
    r"^[^,;]*?\b(is|are|remains?|appears?)\s+(clear|normal|unremarkable|expanded|well expanded|free)\b|"
    r"^[^,;]*?\b(has|have)\s+(resolved|cleared)\b|^\s*(free of|clear)\b|"
    r"^[^,;]*?\b(is|are)\s+(well[- ])?(aerated|inflated)\b")
CLAUSE_BREAK = re.compile(r"\b(but|however|although|though|whereas|while|except|there is|there are|"
                          r"which|otherwise|with)\b")
WORD = re.compile(r"[a-z]+(?:-sided)?")
WINDOW = 4  # modifier words looked at before a head


def sentences(report: str) -> list[str]:
    """Lower-cased sentences (split at . ; ? ! and line breaks; decimal points kept)."""
    text = re.sub(r"(\d)\.(\d)", r"\1,\2", report.lower())
    return [s.strip() for s in re.split(r"[.;?!\n]+", text) if s.strip()]


def _negated(sentence: str, start: int, end: int) -> bool:
    before = PSEUDO_NEGATION.sub("_", sentence[:start])  # "no change in the right upper lobe nodule" names it
    cues = list(PRE_NEGATION.finditer(before))
    if cues and not CLAUSE_BREAK.search(before[cues[-1].end():]):
        return True
    local = list(PRE_NEGATION_LOCAL.finditer(before))
    if local and not re.search(r",|" + CLAUSE_BREAK.pattern, before[local[-1].end():]):
        return True
    return bool(POST_NEGATION.search(sentence[end:]))


def _mention_zones(words: list[str], k: int) -> set[int]:
    """Zones of the head word `words[k]` with the side and level modifiers in the WINDOW words before it."""
    head = words[k]
    if head in LOBES:
        side, levels = LOBES[head]
        return {(0 if side == "left" else 3) + LEVEL_INDEX[lv] for lv in levels}
    window = words[max(0, k - WINDOW) : k + 1]
    first = next((i for i, w in enumerate(window) if w in SIDE_WORDS or w in LEVEL_WORDS or w in BOTH_LEVEL_WORDS),
                 len(window) - 1)
    window = window[first:]  # from the first side / level word to the head
    if NON_LUNG & set(window):  # "right scapula, the base of the glenoid"
        return set()
    sides = {SIDE_WORDS[w] for w in window if w in SIDE_WORDS}
    levels = {LEVEL_WORDS[w] for w in window if w in LEVEL_WORDS}
    for w in window:
        if w in BOTH_LEVEL_WORDS:
            sides.add("both")
            levels.add(BOTH_LEVEL_WORDS[w])
    if head in ("lingula", "lingular"):
        return {1}
    if head == "retrocardiac":  # behind the heart: the left lower lobe
        return {2}
    if head in ("lobe", "lobes") and not sides and levels == {"middle"}:  # only the right lung has one
        return {4}
    if head in ("lobe", "lobes") and "left" in sides and "upper" in levels and len(sides) == 1:
        levels.add("middle")  # LUL holds the lingula
    if not sides and (head in PLURAL_HEADS and head != "lungs" and levels):
        sides.add("both")  # "the bases", "upper lobes"
    if not sides:
        return set()
    if not levels and head in EFFUSION_HEADS:
        levels = {"lower"}
    if not levels:
        if head not in ("lung", "lungs", "hemithorax", "hemithoraces", "field", "fields", "zone", "zones") \
                and head not in SIDE_WORDS and "both" not in sides:
            return set()
        levels = set(LEVEL_INDEX)
    offsets = {0, 3} if "both" in sides or {"left", "right"} <= sides else {0 if "left" in sides else 3}
    return {o + LEVEL_INDEX[lv] for o in offsets for lv in levels}


def _is_head(words: list[str], k: int) -> bool:
    """Whether `words[k]` ends a position mention (a later head word continues it: "left lung base")."""
    w, nxt = words[k], words[k + 1] if k + 1 < len(words) else ""
    if w in HEADS:
        return nxt not in HEADS and nxt not in LEVEL_WORDS
    if w in ("bilaterally", "diffusely"):
        return True
    if w in ("bilateral", "diffuse"):  # "bilateral opacities", not "bilateral rib fractures"
        ahead = set(words[k + 1 : k + 1 + WINDOW])
        return bool(FINDINGS & ahead) and not (HEADS & ahead) and not (NON_LUNG & ahead)
    return False


def _side_only(words: list[str], k: int) -> bool:
    """"opacity on the right" / "in the left": a side with nothing after it (not "greater on the left", not
    a device "seen on the right")."""
    return (words[k] in ("right", "left") and k >= 2 and words[k - 2] in ("on", "in", "at")
            and words[k - 1] == "the" and (k + 1 == len(words) or words[k + 1] in ("side", "and", "with"))
            and not {"greater", "more", "worse", "than"} & set(words[max(0, k - 4) : k])
            and not DEVICES & set(words))


def parse_sentence(sentence: str) -> set[int] | None:
    """Zone indices named (not negated) by one sentence; None when it names no position at all."""
    matches = list(WORD.finditer(sentence))
    words = [m.group(0) for m in matches]
    found: set[int] | None = None
    for k, w in enumerate(words):
        if _side_only(words, k):
            found = _collect(found, {0, 1, 2} if w == "left" else {3, 4, 5}, sentence, matches[k], None)
            continue
        if not _is_head(words, k):
            continue
        zones = _mention_zones(words, k)
        if zones:
            first = next(j for j in range(max(0, k - WINDOW), k + 1)
                         if j == k or words[j] in SIDE_WORDS or words[j] in LEVEL_WORDS)
            found = _collect(found, zones, sentence, matches[k], matches[first].start())
    return found


def _collect(found: set[int] | None, zones: set[int], sentence: str, m: re.Match[str],
             start: int | None = None) -> set[int]:
    found = set() if found is None else found
    if not _negated(sentence, m.start() if start is None else min(start, m.start()), m.end()):
        found |= zones
    return found


def parse_report(report: str) -> Zones | None:
    """Report -> 6-bit zone vector of the positions it names (negated mentions dropped); None when it names
    none (unknown position: no positional constraint for the method)."""
    bits: set[int] = set()
    for s in sentences(report):
        zones = parse_sentence(s)
        if zones:
            bits |= zones
    if not bits:
        return None
    return tuple(int(i in bits) for i in range(6))  # type: ignore[return-value]


def mentions_position(sentence: str) -> bool:
    """True when a sentence holds a position word (the denominator of the parse rate)."""
    return bool(POSITION_VOCAB.search(sentence.lower()))


TEMPLATE = re.compile(r"^\s*(unilateral|bilateral|no)\s+pulmonary\s+infection", re.IGNORECASE)


LATERALITIES = ("patient", "image")


def check_laterality(laterality: str) -> None:
    """A `--laterality` value, or a one-line error naming the choices."""
    if laterality not in LATERALITIES:
        raise MedrefError(f"--laterality {laterality!r}: choose one of {', '.join(LATERALITIES)}")


def caption_zones(caption: str, laterality: str = "image") -> tuple[list[int], bool, str]:
    """(zones, known, note): the image-space zone vector of a caption (left = the image-left half).

    The QaTa / MosMed template grammar when the caption follows it (its "left" is the image left, as the LViT
    labels show, whatever `laterality` says); else the caption is read as a free-text radiology report
    (`parse_report`), whose sides are the `laterality` ones: `patient` (radiology convention: on a frontal chest
    X-ray the patient's right is the image LEFT, so "right lower lobe" is the image-left lower zone) or `image`.
    A report that names no position has unknown zones."""
    if laterality not in LATERALITIES:
        raise ValueError(f"laterality {laterality!r}: choose one of {', '.join(LATERALITIES)}")
    if TEMPLATE.match(caption):
        return list(parse_zones(caption)), True, "" if has_position(caption) else \
            "caption names no zone: zone vector all zeros"
    from_report = parse_report(caption)
    if from_report is None:
        return [0] * 6, False, "caption names no zone: zones unknown (a free-text report without a position)"
    if laterality == "patient":
        return list(flip_zones(from_report)), True, "zones read from report phrasing (patient's sides: mirrored)"
    return list(from_report), True, "zones read from report phrasing"
