"""Seeded generator of a small synthetic corpus for "Goldmine Goods", an imaginary online shop.

Everything is invented; no downloads, standard library only. ``generate_sample_data`` writes a
product catalog, reviews, support conversations and FAQ pairs (about 80% English and 20%
Simplified Chinese) plus a pretraining corpus built from all of them. The same seed and scale
always give byte-identical files.

Template conventions: a template may hold alternatives separated by "|" (one is picked at
random) and ``{slot}`` fields filled from a per-document dict. Tables pair English and Chinese
as "english/中文".
"""

from __future__ import annotations

import json
import random
from datetime import date, timedelta
from pathlib import Path

SHOP, SHOP_ZH = "Goldmine Goods", "金矿良品"
ZH_SHARE = 0.2
BASE_ROWS = {"products": 300, "reviews": 3000, "support": 1500, "faq": 200}
RATING_WEIGHTS = {5: 40, 4: 25, 3: 14, 2: 9, 1: 12}
DELIVERY_DAYS = {"positive": (2, 4), "neutral": (4, 7), "negative": (8, 16)}

# ----------------------------------------------------------------------------- catalog tables
# types: "type/类型: material/材质, ..."; features: verb phrases that follow "it" / "它".
CATEGORIES = {
    "apparel": {
        "zh": "服饰", "price": (14, 129),
        "aspects": "fabric/面料, fit/版型, stitching/做工, sizing/尺码, colour/颜色",
        "types": [
            "scarf/围巾: merino wool/美利奴羊毛, cashmere blend/羊绒混纺, cotton/纯棉",
            "hoodie/连帽卫衣: organic cotton/有机棉, fleece/摇粒绒",
            "t-shirt/T恤: organic cotton/有机棉, linen/亚麻, bamboo jersey/竹纤维",
            "rain jacket/防雨夹克: recycled nylon/再生尼龙, waxed cotton/油蜡棉",
            "polo shirt/Polo衫: pique cotton/珠地棉, linen/亚麻",
            "beanie/针织帽: merino wool/美利奴羊毛, chunky knit/粗针织",
            "cardigan/开衫: cashmere blend/羊绒混纺, cotton/纯棉",
            "wool vest/羊毛背心: merino wool/美利奴羊毛, chunky knit/粗针织",
        ],
        "features": [
            "keeps you warm on chilly mornings/能在早晚天凉时为你保暖",
            "stays soft even after dozens of washes/洗了几十次依然柔软",
            "layers easily under a coat/可以轻松叠穿在外套里面",
            "breathes well on warm days/在天热时也很透气",
            "holds its shape wash after wash/多次洗涤也不变形",
            "has a relaxed fit that flatters most body types/采用宽松版型，适合大多数身材",
        ],
    },
    "home & kitchen": {
        "zh": "家居厨房", "price": (9, 149),
        "aspects": "finish/做工, size/尺寸, weight/分量, colour/颜色, quality/质量",
        "types": [
            "mug/马克杯: stoneware/粗陶, porcelain/白瓷, enamel/搪瓷",
            "chef's knife/主厨刀: Damascus steel/大马士革钢, stainless steel/不锈钢",
            "cutting board/砧板: acacia wood/相思木, bamboo/竹子",
            "throw blanket/盖毯: chunky knit/粗针织, cotton/纯棉, faux fur/仿皮草",
            "scented candle/香薰蜡烛: soy wax/大豆蜡, beeswax/蜂蜡",
            "teapot/茶壶: cast iron/铸铁, borosilicate glass/高硼硅玻璃, ceramic/陶瓷",
            "storage jar/储物罐: glass/玻璃, ceramic/陶瓷",
            "cushion cover/抱枕套: linen/亚麻, velvet/丝绒",
        ],
        "features": [
            "makes weekday cooking a little easier/能让平日做饭轻松不少",
            "looks great on an open shelf/摆在开放式置物架上很好看",
            "is easy to clean/清洁起来很方便",
            "brings a warm and cozy feel to any room/能给房间增添温馨的氛围",
            "is built for years of daily use/经得起多年的日常使用",
            "fits neatly into small apartments/很适合小户型空间",
        ],
    },
    "electronics accessories": {
        "zh": "数码配件", "price": (8, 119),
        "aspects": "build quality/做工, fit/贴合度, finish/表面处理, durability/耐用性, design/设计",
        "types": [
            "phone case/手机壳: silicone/硅胶, recycled plastic/再生塑料, vegan leather/素皮",
            "USB-C cable/USB-C数据线: braided nylon/编织尼龙, silicone/硅胶",
            "wireless charger/无线充电器: aluminum/铝合金, fabric/布面",
            "laptop sleeve/电脑内胆包: wool felt/羊毛毡, neoprene/潜水料",
            "power bank/充电宝: aluminum/铝合金, matte plastic/磨砂塑料",
            "earbuds case/耳机保护套: silicone/硅胶, leather/真皮",
            "phone stand/手机支架: aluminum/铝合金, walnut/胡桃木",
            "wrist rest/键盘腕托: memory foam/记忆棉, walnut/胡桃木",
        ],
        "features": [
            "slips easily into a backpack or tote/可以轻松放进背包或托特包",
            "protects your gear from everyday bumps and scratches/能保护设备免受日常磕碰和刮擦",
            "works with most phones and laptops/兼容大多数手机和笔记本电脑",
            "keeps your desk tidy/能让桌面保持整洁",
            "is tested for thousands of daily uses/经过了数千次使用测试",
            "looks sleek next to your other devices/和其他设备摆在一起也很有质感",
        ],
    },
    "outdoor": {
        "zh": "户外", "price": (15, 199),
        "aspects": "build quality/做工, weight/重量, durability/耐用性, size/尺寸, design/设计",
        "types": [
            "water bottle/保温水壶: stainless steel/不锈钢, Tritan/Tritan",
            "daypack/双肩包: ripstop nylon/防撕裂尼龙, waxed canvas/油蜡帆布",
            "camping lantern/露营灯: aluminum/铝合金, recycled plastic/再生塑料",
            "picnic blanket/野餐垫: waterproof polyester/防水涤纶, wool/羊毛",
            "trekking pole/登山杖: carbon fiber/碳纤维, aluminum/铝合金",
            "hammock/吊床: parachute nylon/降落伞尼龙, cotton rope/棉绳",
            "sun hat/遮阳帽: straw/草编, quick-dry nylon/速干尼龙",
            "folding stool/折叠凳: aluminum/铝合金, beech wood/榉木",
        ],
        "features": [
            "packs down small for weekend trips/能收纳得很小，很适合周末出行",
            "shrugs off rain and mud/不怕雨水和泥泞",
            "weighs less than you'd expect/比想象中轻很多",
            "is ready for anything from city parks to mountain trails/能胜任从城市公园到山间步道的各种场景",
            "sets up in seconds/只需几秒钟就能搭好",
            "holds up well in wind and sun/在大风和烈日下依然耐用",
        ],
    },
    "beauty": {
        "zh": "美妆个护", "price": (6, 79),
        "aspects": "scent/香味, texture/质地, packaging/包装, results/效果",
        "types": [
            "face cream/面霜: shea butter/乳木果, hyaluronic acid/玻尿酸",
            "lip balm/润唇膏: beeswax/蜂蜡, coconut oil/椰子油",
            "hair oil/护发精油: argan/摩洛哥坚果, camellia/山茶花",
            "body wash/沐浴露: lavender/薰衣草, oat/燕麦",
            "facial cleanser/洁面乳: green tea/绿茶, rice/大米",
            "hand cream/护手霜: rose/玫瑰, shea butter/乳木果",
            "sheet mask/面膜: aloe/芦荟, green tea/绿茶",
        ],
        "features": [
            "leaves skin soft without feeling greasy/能让皮肤柔软而不油腻",
            "has a light and natural scent/带有淡淡的天然香气",
            "is gentle enough for sensitive skin/温和不刺激，敏感肌也能用",
            "absorbs in seconds/几秒钟就能吸收",
            "comes in recyclable packaging/采用可回收包装",
            "lasts for months of daily use/每天用也能用好几个月",
        ],
    },
    "toys & games": {
        "zh": "玩具", "price": (7, 89),
        "aspects": "quality/质量, size/大小, paint/涂装, packaging/包装, instructions/说明书",
        "types": [
            "jigsaw puzzle/拼图: birch wood/桦木, recycled cardboard/再生纸板",
            "block set/积木套装: beech wood/榉木, recycled plastic/再生塑料",
            "plush bear/毛绒熊: organic cotton/有机棉, soft plush/短毛绒",
            "kite/风筝: ripstop nylon/防撕裂尼龙, bamboo/竹骨",
            "toy car/玩具车: beech wood/榉木, die-cast metal/合金",
            "stacking tower/叠叠塔: silicone/硅胶, maple wood/枫木",
            "marble run/弹珠轨道: beech wood/榉木, clear plastic/透明塑料",
        ],
        "features": [
            "keeps little hands busy for hours/能让小朋友专注玩上好几个小时",
            "encourages creative and screen-free play/鼓励孩子远离屏幕、发挥创意",
            "is finished with non-toxic paint/使用无毒的儿童安全涂料",
            "is great for family game nights/非常适合家庭游戏之夜",
            "helps develop fine motor skills/有助于锻炼精细动作能力",
            "stores neatly in its own box/可以整齐地收纳在自带的盒子里",
        ],
    },
}
COLOURS = ("Charcoal/炭灰色, Navy/藏青色, Sage/鼠尾草绿, Ivory/象牙白, Terracotta/陶土红, "
           "Mustard/芥末黄, Black/黑色, Sky Blue/天蓝色, Blush/浅粉色, Forest Green/墨绿色, "
           "Sand/沙色, Burgundy/酒红色, Slate/石板灰, Oat/燕麦色")
NAME_WORDS = ("Cozy/舒适, Classic/经典, Everyday/日常, Urban/都市, Alpine/高山, Coastal/海岸, "
              "Heritage/复古, Minimal/极简, Nordic/北欧, Studio/摩登, Summit/巅峰, Harbor/港湾")
QUALITY = ("lightweight/轻巧耐用, durable/经久耐用, thoughtfully designed/设计用心, "
           "versatile/实用百搭, good-looking/颜值很高, practical/简约实用, "
           "well-made/做工精细, timeless/经典耐看, dependable/品质可靠")
CITIES = ("Seattle/上海, Austin/北京, Denver/杭州, Toronto/深圳, London/成都, Chicago/广州, "
          "Boston/南京, Portland/武汉, Sydney/西安, Dublin/苏州, Vancouver/重庆, Atlanta/厦门")
CARRIERS = "UPS/顺丰, FedEx/京东物流, DHL/中通, USPS/圆通, DHL Express/EMS"
WAREHOUSES = "Reno/上海, Columbus/广州, Atlanta/成都, Toronto/天津"
FRIENDS = ("my sister/妹妹, my husband/老公, my wife/老婆, my mum/妈妈, my dad/爸爸, "
           "a friend/朋友, my best friend/闺蜜, my daughter/女儿, my son/儿子, "
           "a coworker/同事, my partner/另一半, my grandma/奶奶")
GIFTS = ("friends and family/亲朋好友, a new neighbour/新邻居, your partner/另一半, "
         "a coworker/同事, a birthday/生日, the holidays/节日")
TEAMS = "quality/质检, delivery/物流, warehouse/仓储, customer experience/客户体验"
NAMES_EN = "Emma Liam Olivia Noah Ava Ethan Sophia Mason Mia Lucas Chloe James Grace Daniel Zoe"
SURNAMES_ZH = "王 李 张 刘 陈 杨 赵 黄 周 吴 徐 孙"
STREETS_EN = "Maple Oak Cedar Pine Elm Harbor Lake Hill Park Mill Willow Birch"
STREETS_ZH = "人民路 中山路 解放路 建设路 南京路 长江路 和平路 文化路"
MONTHS = "January February March April May June July August September October November December"
WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday"
WEEKDAYS_ZH = "周一 周二 周三 周四 周五 周六 周日"
EMOJI = {"positive": "👍 😊 😍 ❤️ 🎉 ✨ 🙌", "neutral": "🤔 😐 🙂 🤷", "negative": "😞 👎 😡 💔 🙄"}

# ----------------------------------------------------------------------------- description tables
DESC = {
    "en": {
        "intro": [
            "The {name} is a {quality} {type} made with {material}.|Meet the {name}: a "
            "{quality} {type} made with {material}.",
            "Crafted with {material}, this {color} {type} is {quality} and built to last.|Made "
            "with {material} and finished in {color}, the {name} is {quality} from day one.",
            "Looking for a {quality} {type}? The {name} is made with {material} and comes in "
            "{color}.|Our {name} pairs {material} with a clean {color} finish.",
            "Designed in-house at {shop}, the {name} is a {quality} everyday {type}.",
        ],
        "feature": ["It {f}.|This {type} {f}.", "Customers tell us it {f}.|Reviewers love that "
                    "it {f}.", "Best of all, it {f}.|On top of that, it {f}.",
                    "In everyday use, it {f}.|Day to day, it {f}."],
        "close": [
            "It ships from our {warehouse} warehouse within {n} business days.|Order today and "
            "it leaves our {warehouse} warehouse within {n} business days.",
            "A thoughtful gift for {gift}.|It makes a great gift for {gift}.",
            "Backed by free 30-day returns and our {warranty}.|Try it risk-free: returns are "
            "free for 30 days.",
            "Pair it with our {other} for a complete set.|It goes well with our {other}.",
        ],
    },
    "zh": {
        "intro": [
            "{name}采用{material}制成，{quality}。|这款{type}选用优质{material}，{quality}。",
            "{name}是{shop}的人气款{type}，{color}配色简洁大方。|这款{color}{type}{quality}，"
            "日常使用很合适。",
            "想找一款{quality}的{type}？{name}选用{material}，颜色为{color}。",
        ],
        "feature": ["它{f}。|这款{type}{f}。", "很多顾客反馈它{f}。|不少买家评价说它{f}。",
                    "更重要的是，它{f}。|此外，它还{f}。", "日常使用中，它{f}。"],
        "close": [
            "下单后{n}个工作日内从{warehouse}仓发货。|现货充足，{n}个工作日内从{warehouse}仓发出。",
            "送给{gift}也很合适。|作为礼物送给{gift}再好不过。",
            "支持30天无忧退货，并享受{warranty}。|享受30天无理由退货服务。",
            "可以搭配我们的{other}一起使用。",
        ],
    },
}

# ----------------------------------------------------------------------------- review tables
# Per language and sentiment: adjectives, then sentence groups (open, aspect, extra, close).
REVIEWS = {
    "en": {
        "positive": {
            "adj": "excellent, superb, great, lovely, top-notch, perfect, fantastic, impressive, "
                   "first-rate, beautiful",
            "open": [
                "Absolutely love this {type}!|Really love my new {type}!|I love this {type} "
                "so much.",
                "Really happy with the {name}.|Very pleased with the {name}.|So glad I picked "
                "up the {name}.",
                "Bought the {color} {type} for {friend} and it was a hit.|Got this {type} as a "
                "gift for {friend}, who adores it.",
                "This {type} exceeded my expectations.|Honestly better than I expected for "
                "${price}.|Great value at ${price}.",
                "My second {type} from {shop}, and it's just as good as the first.|I've had the "
                "{name} for {n} weeks now and it still looks new.",
            ],
            "aspect": [
                "The {aspect} is {adj}.|The {aspect} is {adj}, and the {aspect2} is {adj2}.",
                "I'm impressed by the {aspect}; it feels {adj}.|Honestly, the {aspect} is {adj}.",
                "It really {feature}, just like the listing says.|It {feature}, which is exactly "
                "what I wanted.",
                "The {color} colour looks even better in person.|Gorgeous colour, a rich {color}.",
            ],
            "extra": [
                "Arrived in {days} days via {carrier}, nicely packaged.|Shipping to {city} was "
                "quick, only {days} days.",
                "Customer service answered my question about the {aspect} within the hour.|The "
                "support team was friendly and helpful when I asked about {carrier} delivery.",
            ],
            "close": [
                "Highly recommend the {name}!|Highly recommend this {type} to anyone.",
                "Will definitely buy another in {color2}.|Already planning to order one for "
                "{friend}.",
                "Can't wait to try more from the {shop} {category} range.|Would buy this "
                "{type} again without hesitation.",
                "Worth every cent of the ${price}.|Easily one of my best purchases this {season}.",
            ],
        },
        "neutral": {
            "adj": "fine, average, acceptable, so-so, okay, nothing special, decent, ordinary",
            "open": [
                "The {type} is okay.|It's an okay {type}, nothing more.|The {type} does the job.",
                "Decent {type} for the price.|For ${price}, the {name} is decent enough.",
                "Mixed feelings about the {name}.|I have mixed feelings about this {type}.",
                "Not bad, not amazing.|It's fine, I suppose.|It does what a {type} should, "
                "more or less.",
            ],
            "aspect": [
                "The {aspect} is {padj}, but the {aspect2} is {nadj}.|The {aspect} is {padj}, "
                "though the {aspect2} feels {nadj}.",
                "The {aspect} is {adj}.|I'd call the {aspect} {adj}.",
                "It mostly {feature}, though not always.|The listing says it {feature}; that's "
                "only partly true.",
                "The {color} shade is a little different from the photos.",
            ],
            "extra": [
                "Delivery took {days} days, which was fine.|Shipping to {city} was a bit slow "
                "but okay.",
                "Packaging was basic.|It came in a plain box, nothing fancy.",
            ],
            "close": [
                "Might buy again if it goes on sale.|I'd buy it again at a lower price.",
                "Three stars from me.|Average overall.|It's fine for everyday use.",
                "Not sure I'd recommend it over other options.|There are probably better "
                "choices out there, but this one works.",
            ],
        },
        "negative": {
            "adj": "flimsy, cheap, poor, disappointing, terrible, awful, shoddy, uneven, subpar",
            "open": [
                "Really disappointed with this {type}.|Very disappointed with the {name}.",
                "I regret buying the {name}.|I wish I hadn't bought this {type}.",
                "The {type} fell apart after {n} days.|Mine broke within {n} days of normal use.",
                "Would not recommend the {name}.|Do not buy this {type}.",
                "Not what I expected for ${price}.|Way overpriced at ${price}.",
            ],
            "aspect": [
                "The {aspect} is {adj}.|The {aspect} is {adj} and the {aspect2} is {adj2}.",
                "The {aspect} feels {adj}, nothing like the photos.|The photos hide how {adj} "
                "the {aspect} really is.",
                "It claims it {feature}, but mine doesn't.|The listing says it {feature}, which "
                "mine definitely doesn't.",
                "The {color} colour looks dull and faded in person.|The colour is nothing like the "
                "{color} shown online.",
            ],
            "extra": [
                "It took {days} days to arrive and the box was crushed.|{carrier} took {days} "
                "days and the parcel was damaged.",
                "Customer service took {n} days to respond.|I emailed support twice about the "
                "{aspect} and still have no answer.",
            ],
            "close": [
                "Returning the {type} for a refund.|I've already asked for a refund.",
                "Save your money and skip this {type}.|Spend your ${price} elsewhere.",
                "I won't order this {type} again.|Expected much better from {shop} for ${price}.",
            ],
        },
        "minor": "My only complaint is that the {aspect2} could be better.|One small gripe: "
                 "the {aspect2} is just {madj}.|Only wish the {aspect2} were a bit better.",
    },
    "zh": {
        "positive": {
            "adj": "很好, 非常不错, 很精致, 超出预期, 很扎实, 很棒, 没得挑, 挺惊艳",
            "open": [
                "这款{type}真的很喜欢！|太喜欢这款{type}了！",
                "收到{name}了，非常满意。|{name}到手了，很满意。",
                "给{friend}买的{type}，{friend}很喜欢。",
                "第{n}次在{shop}买东西了，这次的{type}依然没让我失望。|性价比很高，${price}买到这个品质很值。",
            ],
            "aspect": [
                "{aspect}{adj}，{aspect2}也{adj2}。",
                "{aspect}真的{adj}，{color}也很正。|颜色是很正的{color}，{aspect}{adj}。",
                "确实{feature}，和描述一致。|用了几天，它确实{feature}。",
            ],
            "extra": [
                "{carrier}发货很快，{days}天就到{city}了。|物流很快，{days}天就收到了，包装也很仔细。",
                "客服态度很好，回复也及时。|有问题问客服，很快就解决了。|客服很耐心，{n}分钟就回复了。",
            ],
            "close": [
                "推荐购买！|强烈推荐这款{type}。|已经推荐给{friend}了。",
                "下次还会回购{color2}的。|准备再买一个送给{friend}。",
                "好评！|必须好评。",
            ],
        },
        "neutral": {
            "adj": "还行, 一般, 中规中矩, 马马虎虎, 凑合, 普普通通",
            "open": [
                "这款{type}还行吧。|{type}整体一般般。",
                "东西中规中矩，对得起${price}的价格。|${price}的价格，这个品质算正常。",
                "说不上好也说不上差。|有好有坏吧。",
            ],
            "aspect": [
                "{aspect}{padj}，但是{aspect2}{nadj}。|{aspect}还可以，就是{aspect2}{nadj}。",
                "{aspect}{adj}。|{aspect}感觉{adj}。",
                "说是{feature}，实际用下来一般。",
                "颜色和图片有点色差，{color}偏暗一些。",
            ],
            "extra": ["物流{days}天到，速度一般。|{carrier}送了{days}天，不快不慢。", "包装比较简单。"],
            "close": ["打折的话可以考虑再买。|价格再低一点就好了。", "三星吧。|总体来说一般，给三星。",
                      "凑合用吧。|日常用用还可以。"],
        },
        "negative": {
            "adj": "很差, 很粗糙, 让人失望, 很廉价, 太糟糕了, 有明显瑕疵, 不合格",
            "open": [
                "非常失望，这款{type}太差了。|对这款{type}很失望。",
                "后悔买了{name}。|真后悔买了这个{type}。",
                "用了{n}天就坏了。|才用{n}天{type}就出问题了。",
                "不推荐购买{name}。|大家别买这款{type}。|${price}买到这种质量，太不值了。",
            ],
            "aspect": [
                "{aspect}{adj}，{aspect2}也{adj2}。",
                "{aspect}{adj}，和图片完全不一样。|实物{aspect}{adj}，图片太美化了。",
                "说是{feature}，根本做不到。|宣传说{feature}，实际完全不是这样。",
                "颜色也不是图里的{color}，看着很旧。",
            ],
            "extra": [
                "物流太慢了，等了{days}天才到，包装还破了。|{carrier}送了{days}天，盒子都压扁了。",
                "联系客服半天没人回。|客服态度敷衍，问题一直没解决。",
            ],
            "close": ["已经申请退货退款了。|已经退货了。", "大家别踩坑。|劝大家别买。",
                      "再也不会买了。|不会再回购了。"],
        },
        "minor": "唯一的小缺点是{aspect2}{madj}。|美中不足的是{aspect2}稍微差了一点。",
    },
}

# ----------------------------------------------------------------------------- support tables
# Per intent and language: first user messages, first assistant replies, follow-up (user, reply).
SUPPORT = {
    "order_status": {
        "en": {
            "user": [
                "Where is my order {order}? I placed it on {date}.|Can you check the status of "
                "order {order}?|Has order {order} shipped yet?",
                "My package {order} still hasn't arrived. Any update?|Tracking for {order} "
                "hasn't moved in days, what's going on?",
                "I ordered the {product} last week and haven't heard anything. Order number "
                "{order}.|Could you tell me when my {product} will arrive? It's order {order}.",
            ],
            "asst": [
                "Order {order} shipped on {date} with {carrier} and is on its way to {city}. It "
                "should arrive within {days} business days.",
                "I checked order {order}: your {product} left our warehouse on {date} via "
                "{carrier}, tracking number {tracking}. Delivery is expected by {date2}.",
                "Good news! Order {order} is out for delivery in {city} today, so your {product} "
                "should be with you by this evening.",
            ],
            "follow": [
                ("Can I get the tracking number?|What's the tracking number?|Could you send me "
                 "the tracking link?", "Of course, your {carrier} tracking number is {tracking}.|"
                 "Sure, it's {tracking} with {carrier}; you can follow it on their website."),
                ("What if it doesn't arrive by then?|And if it's not here by {date2}?", "If it "
                 "hasn't arrived by {date2}, reply here and we'll open an investigation with "
                 "{carrier} or send a replacement at no cost.|Then just message us again and "
                 "we'll reship your {product} free of charge."),
            ],
        },
        "zh": {
            "user": ["我的订单{order}到哪了？|帮我查一下订单{order}的物流。|请问{order}这个订单发货了吗？",
                     "{date}下的单，{product}怎么还没到？|{product}下单好几天了还没收到，订单号{order}。",
                     "订单{order}的物流好几天没更新了，怎么回事？"],
            "asst": ["已为您查询，订单{order}已于{date}由{carrier}发出，目前正在运往{city}，预计{days}个工作日内送达。",
                     "您的{product}已于{date}出库，{carrier}单号为{tracking}，预计{date2}前送达。|"
                     "订单{order}今天已在{city}派送中，请保持电话畅通。"],
            "follow": [("能给我物流单号吗？|单号是多少？", "当然可以，{carrier}单号是{tracking}，可以在官网查询。"),
                       ("如果到时候还没到怎么办？", "如果{date2}前还没有收到，请直接回复我们，我们会联系{carrier}核查或免费补发。")],
        },
    },
    "cancel_order": {
        "en": {
            "user": [
                "I need to cancel order {order}, please.|Please cancel {order}, I ordered it "
                "by mistake.|Can I still cancel my order {order}?",
                "I changed my mind about the {product}. How do I cancel order {order}?|I'd like "
                "to cancel my purchase of the {product} (order {order}).",
                "Is it too late to cancel {order}? I placed it {hours} hours ago.|I ordered the "
                "wrong {type}. Can you cancel the order before it ships?",
            ],
            "asst": [
                "I've cancelled order {order} for you. The full ${amount} will go back to your "
                "original payment method within 5–7 business days.",
                "Order {order} hadn't shipped yet, so I was able to cancel it. A confirmation "
                "email is on its way to {email}.",
                "I'm sorry, order {order} already shipped with {carrier} on {date}, so I can't "
                "cancel it anymore. Once it arrives, you can return the {product} within 30 "
                "days for a full refund.",
            ],
            "follow": [
                ("Will I be charged anything for cancelling?|Is there a cancellation fee?", "No, "
                 "there's no fee at all. You'll get back the full ${amount}.|Not at all, the "
                 "whole ${amount} comes back to you."),
                ("Can you send me a confirmation?|Could I get that in writing?", "Sure, a "
                 "confirmation for {order} has been sent to {email}.|Done! Check {email} for "
                 "the confirmation of order {order}."),
            ],
        },
        "zh": {
            "user": ["我想取消订单{order}。|麻烦帮我取消一下{order}这个订单。",
                     "{product}拍错了，可以取消吗？订单号{order}。|不想要{product}了，怎么取消订单？",
                     "订单{order}刚下{hours}个小时，还能取消吗？"],
            "asst": ["已为您取消订单{order}，${amount}将在5–7个工作日内原路退回。",
                     "订单{order}还没有发货，已成功取消，确认邮件会发送到{email}。|很抱歉，订单{order}已于"
                     "{date}由{carrier}发出，无法取消了。收到后30天内可以免费退货，我们会全额退款。"],
            "follow": [("取消要手续费吗？|会扣钱吗？", "不收任何手续费，${amount}会全额退回。"),
                       ("可以发个确认邮件给我吗？", "好的，订单{order}的取消确认已发送到{email}。")],
        },
    },
    "refund": {
        "en": {
            "user": [
                "When will I get my refund for order {order}?|Can I get my money back for "
                "order {order}?|How do I request a refund for {order}?",
                "I returned the {product} two weeks ago but haven't been refunded yet.|My "
                "refund of ${amount} still isn't showing on my card.",
                "I'd like a refund for the {product}; it's not what I expected.|Please refund "
                "order {order}, the {type} isn't right for me.",
            ],
            "asst": [
                "Your return for order {order} reached us on {date}, and a refund of ${amount} "
                "was issued. It should appear on your statement within 5–7 business days.",
                "Refunds go back to the original payment method. For order {order}, the "
                "${amount} refund was processed on {date}; some banks take a few extra days.",
                "I've started a refund of ${amount} for the {product} on order {order}. You'll "
                "get an email at {email} once it's processed.",
            ],
            "follow": [
                ("Can the refund go to store credit instead?|Could I get store credit instead?",
                 "Absolutely. I can issue ${amount} as {shop} store credit right away, and it "
                 "never expires.|Yes, ${amount} in store credit is now on your account."),
                ("What if it doesn't show up by then?|And if I still don't see it?", "If it's "
                 "not there by {date2}, reply here and I'll send you the transaction reference "
                 "from our payments team.|Let us know after {date2} and we'll chase it with "
                 "the bank for you."),
            ],
        },
        "zh": {
            "user": ["订单{order}的退款什么时候到账？|我想退款，订单号{order}。",
                     "{product}已经退回两周了，还没收到退款。|${amount}的退款一直没到账，帮忙看一下。",
                     "{product}和描述不符，我想申请退款。"],
            "asst": ["已为您的{product}发起${amount}的退款，处理完成后会发邮件到{email}。",
                     "我们已于{date}收到订单{order}的退货，${amount}已经退回，一般5–7个工作日到账。|退款会原路返回，"
                     "订单{order}的${amount}已于{date}处理，部分银行到账会慢几天。"],
            "follow": [("可以退到店铺余额吗？", "可以的，我现在就把${amount}退为{shop}店铺余额，余额永久有效。"),
                       ("如果到时候还没到账呢？", "如果{date2}前仍未到账，请回复我们，我们会提供交易凭证。")],
        },
    },
    "return_item": {
        "en": {
            "user": [
                "How do I return the {product}? It's not what I needed.|I want to return an "
                "item from order {order}.|Can I send back the {product}?",
                "The {type} I received is the wrong size. Can I return it?|I'd like to return "
                "my {type}; it isn't the {color} I expected.",
                "Can I return the {product} if I've already opened it?|What's the process for "
                "returning something from order {order}?",
            ],
            "asst": [
                "Of course, you can return the {product} within 30 days of delivery. I've "
                "emailed a prepaid {carrier} return label to {email}.",
                "Sure thing. Order {order} is still within our 30-day return window. Pack the "
                "{type} in its original packaging and use the label I've just sent to {email}.",
                "Yes, opened items can be returned as long as they're unused and in good "
                "condition. I've created return {rma} for order {order}.",
            ],
            "follow": [
                ("Do I have to pay for return shipping?|Is the return label free?", "No, "
                 "returns within 30 days are free; the prepaid label is on us.|It's free, "
                 "just drop the parcel at any {carrier} location."),
                ("Can I exchange it for a different size instead?|Could I swap it for the "
                 "{color2} one?", "Yes! Tell me what you'd like and I'll ship the new {type} as "
                 "soon as your return is scanned.|Happy to. The replacement ships the moment "
                 "{carrier} scans your return."),
            ],
        },
        "zh": {
            "user": ["{product}不太合适，怎么退货？|我想退订单{order}里的一件商品。",
                     "收到的{type}颜色和图片不一样，可以退吗？|{type}拆封了还能退吗？"],
            "asst": ["可以的，签收后30天内都可以退货。退货面单已发送到{email}，把包裹交给{carrier}即可，运费由我们承担。",
                     "订单{order}还在30天退货期内，请用原包装把{type}寄回，退货单号为{rma}。"],
            "follow": [("退货运费要我出吗？", "不需要，30天内退货免运费，预付面单由我们承担。"),
                       ("可以换个尺码吗？|能直接换货吗？", "可以！告诉我您想要的款式，我们收到退货后会马上寄出新的{type}。")],
        },
    },
    "shipping_time": {
        "en": {
            "user": [
                "How long does shipping to {city} usually take?|How fast can you ship to "
                "{city}?|What's the delivery time to {city}?",
                "If I order the {product} today, when will it arrive?|When would the {product} "
                "get here if I buy it now?",
                "Do you offer express shipping? I need the {type} by {date2}.|How long until "
                "order {order} gets to me?",
            ],
            "asst": [
                "Standard shipping to {city} takes 3–5 business days, and express delivery with "
                "{carrier} arrives in 1–2 business days.",
                "If you order the {product} before 2 pm today, it ships the same day and should "
                "reach {city} within {days} business days.",
                "Orders over $50 ship free with standard delivery (3–5 business days). Express "
                "shipping is $12.99 and usually gets to {city} in 1–2 days.",
            ],
            "follow": [
                ("Is shipping free?|How much is delivery?", "Standard shipping is free on orders "
                 "over $50; below that it's a flat $4.99.|It's free over $50, otherwise $4.99."),
                ("Which carrier do you use?|Who delivers to {city}?", "We mostly ship with "
                 "{carrier}, and you'll get a tracking number by email once it leaves our "
                 "warehouse.|Usually {carrier}; tracking arrives by email on the day it ships."),
            ],
        },
        "zh": {
            "user": ["寄到{city}一般要几天？|今天下单{product}，什么时候能到？",
                     "有加急吗？我{date2}之前要收到{type}。|订单{order}大概多久能送到？"],
            "asst": ["寄到{city}的标准配送一般3–5个工作日，选择{carrier}加急1–2个工作日送达。",
                     "下午2点前下单当天发货，{product}预计{days}个工作日内到{city}。|订单满$50免运费，"
                     "标准配送3–5个工作日；加急运费$12.99，一般1–2天送达。"],
            "follow": [("包邮吗？|运费多少？", "订单满$50包邮，不满$50收取$4.99运费。"),
                       ("用的是哪家快递？", "一般使用{carrier}，发货后会通过邮件发送物流单号。")],
        },
    },
    "change_address": {
        "en": {
            "user": [
                "I entered the wrong address for order {order}. Can I change it?|Oops, I used "
                "my old address for order {order}.",
                "Please update the shipping address on {order} to {street}, {city}.|Can you "
                "change the delivery address for {order} to {street}?",
                "I'm moving next week. Can you send my {product} to a new address?|Can I "
                "change where the {product} gets delivered?",
            ],
            "asst": [
                "Order {order} hasn't shipped yet, so I can still change the address. Could you "
                "send me the full new address, including the postal code?|Order {order} is "
                "already with {carrier}, so I've asked them to reroute it to your new address.",
                "No problem! I've updated the shipping address for order {order} to {street}, "
                "{city}. You'll get a confirmation email shortly.",
                "As long as the {product} hasn't shipped, the address can still change. What's "
                "the new address, including the postal code?",
            ],
            "follow": [
                ("It's {street}, {city}.|The new one is {street} in {city}.", "Thanks! The "
                 "address for order {order} is now {street}, {city}.|Got it, {street}, {city} "
                 "is saved and your delivery date stays the same."),
                ("Will this delay my delivery?|Does that push back the delivery?", "It might add "
                 "a day at most, and your {product} should still arrive by {date2}.|No, it "
                 "should still arrive by {date2}."),
            ],
        },
        "zh": {
            "user": ["订单{order}的地址填错了，能改吗？|下单后还能修改收货地址吗？",
                     "麻烦把订单{order}的收货地址改成{city}{street}。|我下周搬家，{product}能寄到{city}{street}吗？"],
            "asst": ["订单{order}还没发货，可以修改，请把完整的新地址发给我。|订单{order}已交给{carrier}，"
                     "我已经向他们申请改地址，24小时内会有答复。",
                     "没问题！订单{order}的收货地址已改为{city}{street}，稍后会收到确认邮件。"],
            "follow": [("新地址是{city}{street}。", "好的，订单{order}的地址已更新为{city}{street}，送达时间不变。"),
                       ("会影响送货时间吗？", "最多延迟一天，{product}预计{date2}前可以送到。")],
        },
    },
    "payment_issue": {
        "en": {
            "user": [
                "My card was declined when I tried to buy the {product}.|Checkout keeps "
                "failing at the payment step.|Why won't my card go through?",
                "I was charged twice for order {order}!|There are two charges of ${amount} "
                "on my card for one order.",
                "I see a pending charge of ${amount} but no order confirmation.|My bank shows "
                "${amount} pending, but I never got an order email.",
            ],
            "asst": [
                "Card declines usually come from the bank's fraud check. Please try again, or "
                "use PayPal, Apple Pay or another card.",
                "I can see two authorizations for order {order}. The duplicate ${amount} hold "
                "will be released automatically within 3–5 business days.",
                "That ${amount} charge is only a temporary authorization. The order didn't go "
                "through, so the hold will drop off within a few days.",
            ],
            "follow": [
                ("Can I pay another way?|What other payment options do I have?", "Yes, we "
                 "accept Visa, Mastercard, American Express, PayPal, Apple Pay and Google "
                 "Pay.|Besides cards, you can use PayPal, Apple Pay or Google Pay."),
                ("Is my card information safe?|Should I be worried about my card details?",
                 "Yes. Payments go through a PCI-compliant provider and we never store your "
                 "full card number.|Your card details are safe; we never see the full number."),
            ],
        },
        "zh": {
            "user": ["买{product}的时候银行卡付款失败了。|付款页面一直报错。|为什么不能用支付宝付款？",
                     "订单{order}被扣了两次钱！|扣了${amount}但是没看到订单。"],
            "asst": ["付款失败一般是银行风控导致的，您可以重试或改用微信支付或其他银行卡。",
                     "订单{order}确实有两笔预授权，重复的${amount}会在3–5个工作日内自动解冻。|"
                     "这笔${amount}只是临时预授权，订单没有成功提交，几天内会自动退回。"],
            "follow": [("还有别的付款方式吗？", "有的，我们支持支付宝、微信支付、Visa、Mastercard和PayPal。"),
                       ("我的卡信息安全吗？", "请放心，付款由符合PCI标准的服务商处理，我们不会保存完整卡号。")],
        },
    },
    "product_question": {
        "en": {
            "user": [
                "What is the {product} made of?|What material is the {product}?|Is the {type} "
                "good quality?",
                "Does the {product} come in other colours?|Is the {product} available in "
                "{color2}?",
                "Is the {product} in stock?|Can you tell me more about the {product}?|Would "
                "the {product} make a good gift?",
            ],
            "asst": [
                "Great question! The {product} is made with {material}, and it {feature}.",
                "The {product} comes in {color} and {color2}. It's made with {material}, and "
                "customers love that it {feature}.",
                "Yes, the {product} is in stock and ships within 1–2 business days. It's "
                "currently ${price}, and it {feature}.",
            ],
            "follow": [
                ("Does it come with a warranty?|Is there a warranty?", "Yes, it's covered by "
                 "our {warranty}.|It comes with our {warranty}, and returns are free for 30 "
                 "days."),
                ("Can I get it gift wrapped?|Do you offer gift wrapping?", "Sure! Gift wrapping "
                 "is $3.99, and you can add a free note at checkout.|Yes, for $3.99. Add it in "
                 "your cart and we'll include a handwritten card."),
            ],
        },
        "zh": {
            "user": ["{product}是什么材质的？|{product}有其他颜色吗？",
                     "{product}还有货吗？|这款{type}现在有现货吗？|{product}适合送人吗？"],
            "asst": ["{product}采用{material}制成，{feature}。|{product}有{color}和{color2}两种颜色，"
                     "采用{material}，{feature}。",
                     "{product}有现货，1–2个工作日内发货，目前售价${price}，{feature}。"],
            "follow": [("有质保吗？", "有的，享受{warranty}，如有质量问题免费更换。"),
                       ("可以礼品包装吗？", "可以的，礼品包装每单$3.99，结账时还可以免费添加贺卡留言。")],
        },
    },
    "account_access": {
        "en": {
            "user": [
                "I can't log into my account.|I'm locked out of my account.|My login isn't "
                "working.",
                "I forgot my password and the reset email never arrives.|The password reset "
                "link doesn't work.",
                "I'm not getting the verification code when I sign in.|My two-factor code "
                "never shows up.",
            ],
            "asst": [
                "Your account was locked for security after several failed attempts. I've "
                "unlocked it, so you can sign in again now.",
                "I've just sent a new password reset link to {email}. It's "
                "valid for 30 minutes, so please check your spam folder too.",
                "I've reset your two-step verification, so the next code will go to {email} "
                "within a minute of signing in.",
            ],
            "follow": [
                ("It's still not working for me.|I still can't get in.", "I've just sent a fresh "
                 "reset link to {email}. If that fails too, I can verify your identity here "
                 "instead.|Let's try a new reset link, sent to {email}; please check spam too."),
                ("Are my orders still there?|Will I lose my order history?", "Don't worry, "
                 "all your orders, including {order}, are still in your account.|Nothing is lost; "
                 "order {order} and the rest are all there."),
            ],
        },
        "zh": {
            "user": ["我登录不了账户。|账号登不上去了。|登录错误次数太多，账户被锁了。",
                     "忘记密码了，重置邮件一直收不到。|重置密码的链接打不开。"],
            "asst": ["出于安全考虑，您的账户在多次登录失败后被暂时锁定，我已经为您解锁，现在可以重新登录了。",
                     "重置密码链接已重新发送到{email}，30分钟内有效，也请看看垃圾邮件箱。"],
            "follow": [("还是登不上去。|还是不行。", "已重新发送重置链接到{email}。如果还是不行，我们也可以在这里为您核实身份。"),
                       ("我的订单还在吗？", "都在的，包括订单{order}在内的所有订单都保存在您的账户中。")],
        },
    },
    "complaint": {
        "en": {
            "user": [
                "I'm really unhappy with the {product} I received.|The {product} broke after "
                "two days. Terrible quality.",
                "Your courier left my package in the rain and the {type} is ruined.|This is "
                "the third time my order has been late. Very frustrating.",
                "I want to file a complaint about order {order}.|Honestly, the {product} is "
                "the worst thing I've bought this year.",
            ],
            "asst": [
                "Thank you for telling us. I've sent a replacement {product} with express "
                "shipping at no charge, and you don't need to return the damaged one.",
                "I completely understand your frustration about order {order}. I've added a "
                "${credit} credit to your account and passed your feedback to our {team} team.",
                "That's not the standard we aim for. I've escalated order {order} to our "
                "{team} team, and a full refund of ${amount} is on its way.",
            ],
            "follow": [
                ("I'd rather have a refund than a replacement.|Can I just get my money back?",
                 "Of course. I've issued a full refund of ${amount} for order {order}.|Done, "
                 "${amount} is on its way back to you for order {order}."),
                ("How will you stop this from happening again?|Will anything actually change?",
                 "I've shared the details with our {team} team, and they review every "
                 "complaint each week.|Your case is logged with our {team} team, who follow "
                 "up on every report."),
            ],
        },
        "zh": {
            "user": ["收到的{product}质量太差了，非常不满意。|{product}用了两天就坏了，什么质量！",
                     "快递员把包裹放在雨里，{type}都湿透了！|这已经是第三次延迟发货了，太让人失望了。"],
            "asst": ["非常抱歉给您带来这样的体验！已经为您加急免费补发一个{product}，坏的那个不用寄回。",
                     "完全理解您的心情，非常抱歉。已经为您的账户添加${credit}的补偿余额，并把反馈转给了{team}团队。|"
                     "订单{order}已升级到{team}团队处理，${amount}的全额退款正在办理中。"],
            "follow": [("我更想要退款，不要补发。", "当然可以，订单{order}的${amount}已全额退款，5–7个工作日内到账。"),
                       ("你们怎么保证以后不再发生？", "我已将详细情况反馈给{team}团队，他们每周都会复盘所有投诉。")],
        },
    },
}
APOLOGETIC = {"payment_issue", "complaint", "account_access", "refund"}
CHAT = {
    "en": {
        "system": [
            "You are a helpful customer support assistant for {shop}, an online shop selling "
            "apparel, home goods, electronics accessories, outdoor gear, beauty products and toys.",
            "You are {agent}, a friendly support agent at {shop}. Answer politely and concisely.",
            "You work in customer service for the online store {shop}. Be helpful and polite.",
        ],
        "greet": "||||||||||||||Hi! |Hello! |Hey there! |Good morning. |Good afternoon. |"
                 "Good evening. |Hi there. |Hello, support team. |Hi, quick question. |Hey! |"
                 "Hiya! |Hi team. ",
        "intro": "This is {cust}. |{cust} here. |My name is {cust}. ",
        "hello": "Hi {cust}! |Hello {cust}! ",
        "open": "||||||||||Thanks for reaching out! |Happy to help. |Thanks for contacting "
                "{shop}. |Thanks for your message. |Sure thing! |Thanks for getting in touch. |"
                "Let me check that for you. |Thanks for the details. |{agent} here, happy to "
                "help. |This is {agent} from {shop}. |Thanks for writing in. |Good question. ",
        "sorry": "|I'm sorry for the trouble. |Apologies for the inconvenience. |Sorry to hear "
                 "that. |I'm sorry about this, and thanks for your patience. |{agent} here, and "
                 "I'm sorry for the hassle. ",
        "thanks": ("Thanks|Thank you|Great, thanks|Perfect, thank you|Awesome, thanks a lot|OK, "
                   "thanks", " for the help!|, that's all I needed.|, have a nice day.| for "
                   "sorting this out so quickly.|!| so much, {agent}.|, that answers it."),
        "bye": "You're welcome! Enjoy your {product}.|Happy to help, and have a great {weekday}!|"
               "Anytime! If anything else comes up with order {order}, just reply here.|My "
               "pleasure. Enjoy the rest of your {weekday}!|Glad I could help with the {type}. "
               "Take care!|You're very welcome, and thanks for shopping with {shop}.|No problem "
               "at all. Have a lovely {weekday}!|It was a pleasure. {agent} from {shop}, "
               "signing off.",
    },
    "zh": {
        "system": ["你是{shop}的在线客服助手，请礼貌、简洁地回答顾客的问题。",
                   "你是{shop}网店的客服{agent}，语气亲切，回答准确。"],
        "greet": "|||你好，|您好，|在吗？|客服你好，|亲，|你好，请问一下，|打扰一下，",
        "intro": "我姓{surname}，",
        "hello": "{cust}您好！",
        "open": "||您好！|亲，您好～|感谢您的咨询，|好的，|{agent}为您服务，|收到，|",
        "sorry": "非常抱歉给您带来不便，|很抱歉让您久等了，|",
        "thanks": ("好的|明白了|太好了|收到|行", "，谢谢！|，麻烦了。|，谢谢你！|，辛苦了。"),
        "bye": "不客气！祝您购物愉快～|不客气，有其他问题随时联系我们。|应该的，祝您生活愉快！|"
               "不客气，祝您{weekday}愉快！|不客气，{type}用得开心！|{agent}随时为您服务～",
    },
}
AGENTS = {"en": "Sam Alex Jordan Taylor Riley", "zh": "小金 小美 小安"}

# ----------------------------------------------------------------------------- FAQ tables
# (questions, answer sentence groups) per language; the first group is always used.
FAQ = [
    {"en": ("How long does shipping take?|When will my order arrive?|What are your delivery "
            "times?|How many days does standard delivery take?|How quickly do you ship orders?",
            ["Standard shipping takes 3–5 business days.|Most orders arrive within 3–5 business "
             "days with standard shipping.", "Express delivery arrives in 1–2 business days for "
             "$12.99.|Need it sooner? Express shipping ($12.99) takes 1–2 business days.",
             "Orders placed before 2 pm ship the same day."]),
     "zh": ("发货后多久能到？|一般几天能收到货？|配送需要多长时间？",
            ["标准配送一般3–5个工作日送达。|普通快递通常3–5个工作日到货。", "加急配送1–2个工作日即可送达，运费$12.99。",
             "下午2点前下单当天发货。"])},
    {"en": ("Is shipping free?|How much does delivery cost?|Do you offer free shipping?|What are "
            "your shipping fees?", ["Standard shipping is free on orders over $50.|Orders over "
                                    "$50 ship free.", "Below $50, standard shipping is a flat "
                                    "$4.99.", "Express shipping costs $12.99 for any order."]),
     "zh": ("满多少包邮？|运费怎么算？|有免运费吗？", ["订单满$50免运费。|满$50包邮。", "不满$50收取$4.99的运费。",
                                          "加急配送统一收费$12.99。"])},
    {"en": ("Do you ship internationally?|Can you deliver to Canada or the UK?|Which countries do "
            "you ship to?|Do you ship outside the US?",
            ["Yes, we ship to over 40 countries, including Canada, the UK, Australia and China.|"
             "We deliver to more than 40 countries, including Canada, the UK and China.",
             "International orders usually arrive in 7–14 business days.", "Import duties and "
             "taxes are calculated at checkout, so there are no surprises on delivery."]),
     "zh": ("可以寄到中国吗？|支持国际配送吗？|海外能发货吗？",
            ["可以，我们支持配送到包括中国在内的40多个国家和地区。", "国际订单一般7–14个工作日送达。",
             "关税和税费会在结账时计算，收货时无需另付。"])},
    {"en": ("How can I track my order?|Where do I find my tracking number?|Is there a way to see "
            "where my parcel is?",
            ["You'll get a tracking number by email as soon as your order ships.|Once your order "
             "leaves our warehouse, we email you a tracking link.", "You can also see it on the "
             "Orders page of your account.", "If tracking hasn't changed for 5 days, contact us "
             "and we'll check with the carrier."]),
     "zh": ("怎么查询物流？|在哪里看快递单号？",
            ["订单发货后，我们会通过邮件发送物流单号。", "您也可以在账户的“我的订单”页面查看物流信息。",
             "如果物流5天没有更新，请联系客服，我们会帮您向快递公司核实。"])},
    {"en": ("What is your return policy?|Can I return an item?|How do I send something back?|"
            "How long do I have to return a product?",
            ["You can return most items within 30 days of delivery.|We accept returns within 30 "
             "days of delivery.", "Items should be unused and in their original packaging.",
             "Start a return from your account and we'll email you a free prepaid label.|Return "
             "shipping is free: just print the prepaid label from your account."]),
     "zh": ("可以退货吗？|退货政策是怎样的？|收到货多少天内可以退？",
            ["大部分商品在签收后30天内可以退货。", "商品需保持未使用状态并带有原包装。",
             "在账户中申请退货后，我们会发送免费的退货面单。"])},
    {"en": ("How long do refunds take?|When will I get my money back?|How are refunds paid?|I "
            "returned an item. When is my refund processed?",
            ["Once your return arrives, we refund your original payment method within 2 "
             "business days.|We refund the original payment method within 2 business days of "
             "receiving your return.", "It can take 5–7 business days for the money to show up "
             "on your statement.", "If you prefer, we can issue store credit instead."]),
     "zh": ("退款多久能到账？|退货后什么时候退款？|钱退到哪里？",
            ["收到退货后2个工作日内原路退款。", "退款到账一般需要5–7个工作日，具体取决于银行。",
             "也可以选择退为店铺余额。"])},
    {"en": ("Can I exchange an item for a different size?|How do exchanges work?|Can I swap my "
            "order for another colour?|Do you do exchanges?",
            ["Yes, exchanges are free within 30 days.|Exchanges for a different size or colour "
             "are free within 30 days.", "Start an exchange from your account and we'll ship "
             "the replacement as soon as we scan your return.", "If the new size is out of "
             "stock, we'll refund you instead."]),
     "zh": ("可以换尺码吗？|怎么换货？|能换颜色吗？",
            ["可以，30天内换货免费。", "在账户中申请换货，我们收到退回商品后会立即寄出新商品。",
             "如果新尺码缺货，我们会为您办理退款。"])},
    {"en": ("What payment methods do you accept?|Can I pay with PayPal?|Do you take Apple Pay?|"
            "Which cards do you accept?",
            ["We accept Visa, Mastercard, American Express, PayPal, Apple Pay and Google Pay.|"
             "You can pay by Visa, Mastercard, Amex, PayPal, Apple Pay or Google Pay.",
             "Customers in China can also pay with Alipay or WeChat Pay.", "Orders over $100 "
             "can be split into 4 interest-free payments."]),
     "zh": ("支持哪些付款方式？|可以用支付宝吗？|能用微信支付吗？",
            ["我们支持支付宝、微信支付、Visa、Mastercard和PayPal。", "订单满$100可以选择4期免息分期。"])},
    {"en": ("Do your products come with a warranty?|What does the warranty cover?|How long is "
            "the warranty on electronics?|My item is defective. Is it covered?",
            ["Electronics accessories come with a 1-year warranty, and everything else is "
             "covered against manufacturing defects for 90 days.", "To make a claim, send us "
             "your order number and a photo of the problem.", "We'll repair or replace the item "
             "free of charge."]),
     "zh": ("有质保吗？|质保期多久？|商品有质量问题怎么办？",
            ["数码配件享受一年质保，其他商品90天内如有质量问题免费处理。", "请提供订单号和问题照片。",
             "我们会为您免费更换。"])},
    {"en": ("How do I find my size?|Do your clothes run small?|Is there a size chart?|What size "
            "should I order?",
            ["Our clothes fit true to size, and every apparel page has a size chart in cm and "
             "inches.", "If you're between sizes, we suggest sizing up.", "Not sure? Exchanges "
             "are free, so you can always swap for another size."]),
     "zh": ("尺码怎么选？|衣服偏大还是偏小？|有尺码表吗？",
            ["我们的衣服尺码标准，每个服饰商品页面都有详细的尺码表。", "介于两个尺码之间建议选大一码。",
             "如果不合适，可以免费换尺码。"])},
    {"en": ("Can I cancel my order?|How do I cancel an order?|Can I change my order after "
            "placing it?", ["You can cancel or change an order within 1 hour of placing it "
                            "from your account.", "After that, contact support and we'll do "
                            "our best before it ships.", "If it has already shipped, you can "
                            "simply return it for free."]),
     "zh": ("下单后可以取消吗？|怎么修改订单？", ["下单后1小时内可以在账户中自行取消或修改订单。",
                                     "超过1小时请联系客服，我们会在发货前尽量帮您处理。"])},
    {"en": ("Do you offer gift wrapping?|Can I add a gift message?|Can you wrap my order as a "
            "gift?", ["Gift wrapping is $3.99 per order, and a personal message is always "
                      "free.|We gift wrap any order for $3.99 and add your message for free.",
                      "Prices are left off the packing slip of gift orders.", "We also sell "
                      "digital gift cards from $10 to $200 that never expire."]),
     "zh": ("可以礼品包装吗？|能写贺卡吗？", ["礼品包装每单$3.99，贺卡留言免费。", "礼品订单的发货单上不显示价格。",
                                   "我们还提供$10到$200的电子礼品卡，永久有效。"])},
    {"en": ("Do you have any discount codes?|Are there any discounts right now?|How can I save "
            "on my first order?", ["Sign up for our newsletter and get 10% off your first "
                                   "order.", "Students get 15% off with a verified student "
                                   "email.", "We also run seasonal sales in spring and around "
                                   "the holidays."]),
     "zh": ("有优惠码吗？|有什么优惠活动吗？", ["订阅我们的邮件，首单立享9折。", "学生通过邮箱认证可享85折。"])},
    {"en": ("How do I reset my password?|I forgot my password. What should I do?|I can't "
            "remember my password.", ["Click “Forgot password” on the sign-in page and we'll "
                                      "email you a reset link.", "The link is valid for 30 "
                                      "minutes, so check your spam folder if you don't see it."]),
     "zh": ("忘记密码怎么办？|怎么重置密码？", ["在登录页点击“忘记密码”，我们会发送重置链接到您的邮箱。",
                                   "链接30分钟内有效，没收到的话请查看垃圾邮件箱。"])},
    {"en": ("Do I need an account to order?|Can I check out as a guest?|Why should I create an "
            "account?", ["You can check out as a guest.", "An account lets you track orders, "
                         "start returns and save addresses."]),
     "zh": ("必须注册才能下单吗？|可以不注册直接买吗？", ["可以使用游客身份下单。", "注册账户后更方便查询订单、申请退货。"])},
    {"en": ("How can I contact customer service?|When is customer support available?|How do I "
            "reach your support team?",
            ["You can reach us by chat or at support@goldmine-goods.example, every day from 8 am "
             "to 8 pm.", "We usually reply within a few hours."]),
     "zh": ("客服工作时间是？|怎么联系客服？",
            ["可以通过在线客服或邮件support@goldmine-goods.example联系我们，每天早8点到晚8点在线。",
             "我们通常几小时内回复。"])},
]


# ----------------------------------------------------------------------------- helpers
def _pairs(spec: str) -> list[tuple[str, str]]:
    """Parse "english/中文, english/中文" into [(english, 中文), ...]."""
    return [tuple(x.strip() for x in item.split("/", 1)) for item in spec.split(",")]


def _parse_catalog() -> dict:
    out = {}
    for name, cat in CATEGORIES.items():
        types = [(_pairs(head)[0], _pairs(mats)) for head, mats in
                 (spec.split(":") for spec in cat["types"])]
        out[name] = {**cat, "types": types, "aspects": _pairs(cat["aspects"]),
                     "features": [_pairs(f)[0] for f in cat["features"]]}
    return out


CATALOG = _parse_catalog()
TABLES = {key: _pairs(spec) for key, spec in {
    "colour": COLOURS, "word": NAME_WORDS, "quality": QUALITY, "city": CITIES,
    "carrier": CARRIERS, "warehouse": WAREHOUSES, "friend": FRIENDS, "gift": GIFTS, "team": TEAMS,
}.items()}
ADJ = {(lang, s): [a.strip() for a in REVIEWS[lang][s]["adj"].split(",")]
       for lang in REVIEWS for s in ("positive", "neutral", "negative")}
INTENTS = sorted(SUPPORT)


def _fill(rng: random.Random, template: str, slots: dict) -> str:
    """Pick one "|" alternative of ``template`` and fill its slots."""
    return rng.choice(template.split("|")).format_map(slots)


def _join(sentences: list[str], lang: str) -> str:
    return (" " if lang == "en" else "").join(s for s in sentences if s)


def _langs(rng: random.Random, n: int) -> list[str]:
    """Exactly round(n * ZH_SHARE) Chinese rows, shuffled."""
    n_zh = round(n * ZH_SHARE)
    langs = ["zh"] * n_zh + ["en"] * (n - n_zh)
    rng.shuffle(langs)
    return langs


def _dates(rng: random.Random, lang: str) -> tuple[str, str]:
    first = date(2024, 1, 1) + timedelta(days=rng.randrange(360))
    second = first + timedelta(days=rng.randint(2, 6))
    if lang == "zh":
        return tuple(f"{d.month}月{d.day}日" for d in (first, second))
    return tuple(f"{MONTHS.split()[d.month - 1]} {d.day}" for d in (first, second))


def _product_slots(p: dict, lang: str) -> dict:
    i = 0 if lang == "en" else 1
    return {"name": p["names"][i], "product": p["names"][i], "type": p["type"][i],
            "material": p["material"][i], "color": p["colour"][i], "color2": p["colour2"][i],
            "feature": p["features"][0][i], "price": f"{p['price']:.2f}",
            "warranty": p["warranty"][i], "shop": SHOP if lang == "en" else SHOP_ZH}


# ----------------------------------------------------------------------------- products
def _describe(rng: random.Random, p: dict, lang: str) -> str:
    i, table = (0 if lang == "en" else 1), DESC[lang]
    slots = {**_product_slots(p, lang), "quality": rng.choice(TABLES["quality"])[i],
             "warehouse": rng.choice(TABLES["warehouse"])[i], "n": rng.randint(1, 3),
             "gift": rng.choice(TABLES["gift"])[i], "other": p["other"][i]}
    sentences = [_fill(rng, rng.choice(table["intro"]), slots)]
    k = rng.randint(1, 3)
    for frame, feature in zip(rng.sample(table["feature"], k), p["features"]):
        sentences.append(_fill(rng, frame, {**slots, "f": feature[i]}))
    if rng.random() < 0.7:
        sentences.append(_fill(rng, rng.choice(table["close"]), slots))
    return _join(sentences, lang)


def _make_products(rng: random.Random, n: int) -> list[dict]:
    products, seen, categories = [], set(), list(CATALOG)
    for idx, lang in enumerate(_langs(rng, n)):
        category = categories[idx % len(categories)]
        cat = CATALOG[category]
        for _ in range(50):  # unique names while the combinations last
            ptype, materials = rng.choice(cat["types"])
            material, colour = rng.choice(materials), rng.choice(TABLES["colour"])
            parts = [rng.choice(TABLES["word"])]
            if category != "beauty" and rng.random() < 0.6:
                parts.append(colour)
            parts += [material, ptype]
            name_en = " ".join(w[:1].upper() + w[1:] for p in parts for w in p[0].split())
            if name_en not in seen:
                break
        seen.add(name_en)
        lo, hi = cat["price"]
        others = [t for t, _ in cat["types"] if t != ptype]
        p = {"id": f"P{idx + 1:04d}", "category": category, "lang": lang,
             "names": (name_en, "".join(x[1] for x in parts)), "type": ptype,
             "material": material, "colour": colour,
             "colour2": rng.choice([c for c in TABLES["colour"] if c != colour]),
             "features": rng.sample(cat["features"], 3), "other": rng.choice(others),
             "price": round(rng.randint(lo, hi) + rng.choice([0.99, 0.99, 0.95, 0.49, 0.0]), 2),
             "warranty": ("1-year warranty", "一年质保") if category.startswith("electronics")
             else ("90-day warranty against defects", "90天质保")}
        p["name"], p["description"] = p["names"][lang == "zh"], _describe(rng, p, lang)
        products.append(p)
    return products


# ----------------------------------------------------------------------------- reviews
def _review_text(rng: random.Random, p: dict, rating: int, sentiment: str, lang: str) -> str:
    i, table = (0 if lang == "en" else 1), REVIEWS[lang][sentiment]
    aspects = rng.sample(CATALOG[p["category"]]["aspects"], 4)  # distinct across sentences
    slots = {**_product_slots(p, lang), "padj": rng.choice(ADJ[lang, "positive"]),
             "nadj": rng.choice(ADJ[lang, "negative"]), "madj": rng.choice(ADJ[lang, "neutral"]),
             "days": rng.randint(*DELIVERY_DAYS[sentiment]), "n": rng.randint(2, 12),
             "carrier": rng.choice(TABLES["carrier"])[i], "city": rng.choice(TABLES["city"])[i],
             "friend": rng.choice(TABLES["friend"])[i], "category": p["category"],
             "season": rng.choice(["spring", "summer", "autumn", "winter", "year"])}
    opener = table["open"]
    if rng.random() < 0.12:  # mixed signals: open in the tone of a neighbouring sentiment
        near = {"positive": ["neutral"], "neutral": ["positive", "negative"]}
        opener = REVIEWS[lang][rng.choice(near.get(sentiment, ["neutral"]))]["open"]
    sentences = [_fill(rng, rng.choice(opener), slots)]
    for j, group in enumerate(rng.sample(table["aspect"], rng.randint(1, 2))):
        adj, adj2 = rng.sample(ADJ[lang, sentiment], 2)
        slots.update(aspect=aspects[2 * j][i], aspect2=aspects[2 * j + 1][i], adj=adj, adj2=adj2)
        sentences.append(_fill(rng, group, slots))
    if rng.random() < 0.45:
        sentences.append(_fill(rng, rng.choice(table["extra"]), slots))
    if rating == 4 and rng.random() < 0.4:
        sentences.append(_fill(rng, REVIEWS[lang]["minor"], slots))
    if rng.random() < 0.6:
        sentences.append(_fill(rng, rng.choice(table["close"]), slots))
    if rng.random() < 0.15:
        sentences.append(rng.choice(EMOJI[sentiment].split()) * rng.choice([1, 1, 2]))
    return _join(sentences, lang)


def _make_reviews(rng: random.Random, n: int, products: list[dict]) -> list[dict]:
    ratings = ([5, 4, 3, 2, 1] * 2)[:n] + rng.choices(
        list(RATING_WEIGHTS), weights=list(RATING_WEIGHTS.values()), k=max(0, n - 10))
    rng.shuffle(ratings)
    rows = []
    for idx, (rating, lang) in enumerate(zip(ratings, _langs(rng, n))):
        p = rng.choice(products)
        sentiment = "positive" if rating >= 4 else "neutral" if rating == 3 else "negative"
        rows.append({"id": f"R{idx + 1:05d}", "product_id": p["id"], "rating": rating,
                     "sentiment": sentiment, "lang": lang,
                     "text": _review_text(rng, p, rating, sentiment, lang)})
    return rows


# ----------------------------------------------------------------------------- support chats
def _conversation(rng: random.Random, intent: str, lang: str, p: dict) -> list[dict]:
    i, chat, table = (0 if lang == "en" else 1), CHAT[lang], SUPPORT[intent][lang]
    date1, date2 = _dates(rng, lang)
    surname = rng.choice(SURNAMES_ZH.split())
    cust = rng.choice(NAMES_EN.split()) if lang == "en" else surname + rng.choice(["先生", "女士"])
    street = (f"{rng.randint(2, 980)} {rng.choice(STREETS_EN.split())} "
              f"{rng.choice(['Street', 'Avenue', 'Road', 'Lane'])}" if lang == "en"
              else f"{rng.choice(STREETS_ZH.split())}{rng.randint(1, 300)}号")
    slots = {**_product_slots(p, lang), "date": date1, "date2": date2, "cust": cust,
             "surname": surname, "street": street, "days": rng.randint(2, 6),
             "order": f"#{rng.choice('ABCDEFGH')}{rng.randint(10000, 99999)}",
             "tracking": f"GG{rng.randint(10**9, 10**10 - 1)}",
             "rma": f"RMA-{rng.randint(1000, 9999)}", "hours": rng.randint(1, 20),
             "amount": f"{p['price'] * rng.choice([1, 1, 1, 2]):.2f}",
             "email": f"{cust.lower() if lang == 'en' else 'user'}{rng.randint(10, 999)}"
                      "@example.com",
             "credit": rng.choice([10, 15, 20, 25]), "team": rng.choice(TABLES["team"])[i],
             "carrier": rng.choice(TABLES["carrier"])[i], "city": rng.choice(TABLES["city"])[i],
             "agent": rng.choice(AGENTS[lang].split()),
             "weekday": rng.choice((WEEKDAYS if lang == "en" else WEEKDAYS_ZH).split())}
    messages = []
    if rng.random() < 0.6:
        system = _fill(rng, rng.choice(chat["system"]), slots)
        messages.append({"role": "system", "content": system})
    named, k = rng.random() < 0.35, rng.randrange(len(table["user"]))  # k pairs user/reply
    user = (_fill(rng, chat["greet"], slots) + (_fill(rng, chat["intro"], slots) if named else "")
            + _fill(rng, table["user"][k], slots))
    sorry = intent in APOLOGETIC and rng.random() < 0.6
    opener = _fill(rng, chat["hello"], slots) if named else ""
    if sorry or not (named and lang == "zh"):
        opener += _fill(rng, chat["sorry" if sorry else "open"], slots)
    turns = [(user, opener + _fill(rng, table["asst"][k % len(table["asst"])], slots))]
    for question, answer in rng.sample(table["follow"], rng.choices([0, 1, 2], [3, 4, 3])[0]):
        turns.append((_fill(rng, question, slots), _fill(rng, answer, slots)))
    if len(turns) > 1 and rng.random() < 0.45:  # end with a polite thank-you exchange
        thanks = "".join(_fill(rng, part, slots) for part in chat["thanks"])
        turns[-1] = (thanks, _fill(rng, chat["bye"], slots))
    for user_msg, assistant_msg in turns:
        messages += [{"role": "user", "content": user_msg},
                     {"role": "assistant", "content": assistant_msg}]
    return messages


def _make_support(rng: random.Random, n: int, products: list[dict]) -> list[dict]:
    intents = [INTENTS[k % len(INTENTS)] for k in range(n)]
    rng.shuffle(intents)
    return [{"id": f"C{idx + 1:05d}", "intent": intent, "lang": lang,
             "messages": _conversation(rng, intent, lang, rng.choice(products))}
            for idx, (intent, lang) in enumerate(zip(intents, _langs(rng, n)))]


# ----------------------------------------------------------------------------- FAQ
def _make_faq(rng: random.Random, n: int) -> list[dict]:
    topics = [FAQ[k % len(FAQ)] for k in range(n)]
    rng.shuffle(topics)
    rows = []
    for idx, (topic, lang) in enumerate(zip(topics, _langs(rng, n))):
        questions, groups = topic[lang]
        answer = [rng.choice(groups[0].split("|"))]
        answer += [rng.choice(g.split("|")) for g in groups[1:] if rng.random() < 0.6]
        rows.append({"id": f"F{idx + 1:04d}", "lang": lang,
                     "question": rng.choice(questions.split("|")), "answer": _join(answer, lang)})
    return rows


# ----------------------------------------------------------------------------- corpus + files
def _documents(products, reviews, support, faq) -> list[tuple[str, str]]:
    """(lang, text) pairs; texts never contain a blank line."""
    docs = []
    for p in products:
        price = f"(${p['price']:.2f})" if p["lang"] == "en" else f"（${p['price']:.2f}）"
        docs.append((p["lang"], f"{p['name']} {price}\n{p['description']}"))
    for r in reviews:
        docs.append((r["lang"], "★" * r["rating"] + "☆" * (5 - r["rating"]) + " " + r["text"]))
    for f in faq:
        docs.append((f["lang"], f"Q: {f['question']}\nA: {f['answer']}"))
    for c in support:
        docs.append((c["lang"], "\n".join(
            f"{m['role'].capitalize()}: {m['content']}" for m in c["messages"]
            if m["role"] != "system")))
    return docs


def _write(path: Path, text: str) -> None:
    path.write_bytes(text.encode("utf-8"))


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _readme(seed: int, scale: float, rows: dict[str, int]) -> str:
    described = {
        "products.jsonl": "product catalog: id, name, category, price, lang, description",
        "reviews.jsonl": "product reviews: id, product_id, rating 1-5, sentiment, lang, text",
        "support.jsonl": "support chats: id, intent, lang, messages (OpenAI-style roles)",
        "faq.jsonl": "shop FAQ: id, lang, question, answer",
        "corpus.txt": "pretraining text: all of the above, documents separated by a blank line",
        "corpus.jsonl": "the same documents as {\"text\": ...} lines",
    }
    table = "\n".join(f"| `{name}` | {rows[name]} | {text} |" for name, text in described.items())
    return (f"# {SHOP} sample data\n\n"
            f"Synthetic data for {SHOP}, an imaginary online shop, generated by goldmine "
            f"(`goldmine.data.sample.generate_sample_data`) with seed={seed} and scale={scale}.\n"
            "Every product, review, conversation and answer is invented. About 80% of rows are "
            "English and 20% Simplified Chinese.\nRegenerating with the same seed and scale "
            "gives byte-identical files.\n\n| file | rows | contents |\n|---|---|---|\n"
            f"{table}\n\nSupport intents: {', '.join(INTENTS)}.\n")


def generate_sample_data(out_dir: str | Path, seed: int = 0, scale: float = 1.0) -> dict:
    """Write the sample corpus into out_dir (created if missing); return a summary dict.

    ``scale`` multiplies the row counts (every file keeps at least one row). The summary has
    ``out_dir``, ``seed``, ``scale``, ``files`` ({name: {"path", "rows", "bytes"}}; rows are
    lines for jsonl files and README.md, documents for corpus.txt), ``intents`` and
    ``languages`` (documents per language).
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    n = {name: max(1, round(count * scale)) for name, count in BASE_ROWS.items()}
    products = _make_products(rng, n["products"])
    reviews = _make_reviews(rng, n["reviews"], products)
    support = _make_support(rng, n["support"], products)
    faq = _make_faq(rng, n["faq"])
    docs = _documents(products, reviews, support, faq)
    rng.shuffle(docs)
    catalog = [{"id": p["id"], "name": p["name"], "category": p["category"], "price": p["price"],
                "lang": p["lang"], "description": p["description"]} for p in products]
    texts = {
        "products.jsonl": _jsonl(catalog), "reviews.jsonl": _jsonl(reviews),
        "support.jsonl": _jsonl(support), "faq.jsonl": _jsonl(faq),
        "corpus.txt": "\n\n".join(text for _, text in docs) + "\n",
        "corpus.jsonl": _jsonl([{"text": text} for _, text in docs]),
    }
    rows = {name: text.count("\n") for name, text in texts.items()}
    rows["corpus.txt"] = len(docs)
    texts["README.md"] = _readme(seed, scale, rows)
    rows["README.md"] = texts["README.md"].count("\n")
    files = {}
    for name, text in texts.items():
        _write(out / name, text)
        files[name] = {"path": str(out / name), "rows": rows[name],
                       "bytes": len(text.encode("utf-8"))}
    languages = {"en": 0, "zh": 0}
    for lang, _ in docs:
        languages[lang] += 1
    return {"out_dir": str(out), "seed": seed, "scale": scale, "files": files,
            "intents": list(INTENTS), "languages": languages}
